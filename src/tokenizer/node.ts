// Node-only: build the tokenizer from a model folder on disk (the CLI, tests, benchmarks). The browser reads the
// same files from IndexedDB and passes their contents to `new Qwen3Tokenizer(...)` directly.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ModelLoadError } from '../errors.ts';
import { Qwen3Tokenizer } from './tokenizer.ts';

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** tokenizer.json is required; tokenizer_config.json, generation_config.json and chat_template.jinja are used when present. */
export async function loadTokenizerFromDir(dir: string): Promise<Qwen3Tokenizer> {
  const tokenizerJson = await readOptional(join(dir, 'tokenizer.json'));
  if (tokenizerJson === undefined) {
    throw new ModelLoadError(`${dir}: tokenizer.json not found. Download it with the model (it sits beside config.json).`, 'tokenizer.json');
  }
  const [tokenizerConfig, generationConfig, chatTemplate] = await Promise.all([
    readOptional(join(dir, 'tokenizer_config.json')),
    readOptional(join(dir, 'generation_config.json')),
    readOptional(join(dir, 'chat_template.jinja')),
  ]);
  return new Qwen3Tokenizer({ tokenizerJson, tokenizerConfig, generationConfig, chatTemplate });
}
