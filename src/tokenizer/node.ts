// Node-only: build the tokenizer from a model folder on disk (the CLI, tests, benchmarks). The browser reads the
// same files from IndexedDB and passes their contents to `new Qwen3Tokenizer(...)` directly.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ModelLoadError } from '../errors.ts';
import { Qwen3Tokenizer } from './tokenizer.ts';

/** Far above the real files (tokenizer.json: 11 MB); a bigger one is refused before it is read. */
const MAX_FILE_BYTES = 64 << 20;

async function readOptional(path: string): Promise<string | undefined> {
  try {
    const { size } = await stat(path);
    if (size > MAX_FILE_BYTES) throw new ModelLoadError(`${path}: ${size} bytes, more than a tokenizer file needs. Re-download it from the model repository.`, path);
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (e instanceof ModelLoadError) throw e;
    throw new ModelLoadError(`${path} could not be read (${(e as Error).message}).`, path, undefined, { cause: e });
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
