// q3n: the command line. `q3n logits` checks the GPU forward pass against any reference; `q3n generate`
// chats with a model. Runs on WebGPU through Dawn (SwiftShader when there is no GPU).
import { writeFile } from 'node:fs/promises';
import { encodeSafetensors } from '../checkpoint/write.ts';
import { Qwen3NextError } from '../errors.ts';
import { Args, UsageError } from './args.ts';
import { generateCommand } from './generate.ts';
import { MODEL_OPTIONS, MODEL_USAGE, openModel } from './open-model.ts';
import { meanNll } from '../model/perplexity.ts';
import { expertStats } from '../cache/load.ts';
import { readSafetensorsHeader } from '../checkpoint/safetensors.ts';
import { NodeFileSource } from '../checkpoint/node-files.ts';
import { convertCommand, CONVERT_USAGE } from './convert.ts';

const USAGE = `usage (--model: a HF checkpoint folder, or a packed model folder from q3n convert):
  q3n logits     --model <dir> --prompt-ids 5,17,42 [--decode-ids 7,8] --out out.safetensors
  q3n generate   --model <dir> --prompt "text" [--max-tokens 48] [--temperature 0] [--top-k 0] [--top-p 1]
                 [--repetition-penalty 1] [--seed 0] [--chat] [--draft-tokens 1|2|3 (speculative, the model's MTP layer)]
  q3n perplexity --model <dir> --ids-file ids.safetensors [--ids-tensor ids] [--window 512] [--windows N]
  ${CONVERT_USAGE}
${MODEL_USAGE}`;


/** Prefill logits (T, V) through chunked prefill, then one recurrent decode step per teacher-forced decode id. */
async function logitsCommand(args: Args) {
  args.allow([...MODEL_OPTIONS, 'prompt-ids', 'decode-ids', 'out']);
  const promptIds = args.ids('prompt-ids');
  if (promptIds.length === 0) throw new UsageError('--prompt-ids needs at least one id');
  const decodeIds = args.ids('decode-ids');
  const out = args.str('out');
  const { model, ctx } = await openModel(args);
  const V = model.config.vocabSize;
  const prefill = await model.forward(promptIds, { logits: 'all' });
  const decode = new Float32Array(decodeIds.length * V);
  for (let i = 0; i < decodeIds.length; i++) decode.set(await model.forward([decodeIds[i]]), i * V);
  await writeFile(out, encodeSafetensors([
    { name: 'prefill_logits', shape: [promptIds.length, V], data: prefill },
    { name: 'decode_logits', shape: [decodeIds.length, V], data: decode },
  ], { prompt_ids: promptIds.join(','), decode_ids: decodeIds.join(',') }));
  console.log(`wrote ${out}: prefill_logits [${promptIds.length}, ${V}], decode_logits [${decodeIds.length}, ${V}]`);
  const xs = expertStats(model);
  if (xs) console.log(`expert cache: ${xs.slotsPerLayer}/${xs.experts} slots per layer, hit rate ${(xs.totals.hitRate * 100).toFixed(1)}%, ${xs.totals.misses} misses, prefetch accuracy ${(xs.totals.prefetchAccuracy * 100).toFixed(1)}%, stall ${xs.totals.stallMs.toFixed(0)} ms`);
  ctx.device.destroy();
}

/** Held-out perplexity of a token-id tensor over non-overlapping windows (llama-perplexity style). */
async function perplexityCommand(args: Args) {
  args.allow([...MODEL_OPTIONS, 'ids-file', 'ids-tensor', 'window', 'windows']);
  const file = args.str('ids-file'), name = args.str('ids-tensor', 'ids');
  const header = await readSafetensorsHeader(new NodeFileSource(file));
  const info = header.tensors.get(name);
  if (!info || info.dtype !== 'I32') throw new UsageError(`${file} has no I32 tensor "${name}"`);
  const ids = new Int32Array((await new NodeFileSource(file).read(info.offset, info.byteLength)).buffer);
  const window = args.num('window', 512), windows = args.num('windows', Math.floor((ids.length - 1) / window));
  const { model, ctx } = await openModel(args);
  const start = performance.now();
  const nll = await meanNll(model, ids, window, windows);
  console.log(`perplexity ${Math.exp(nll).toFixed(4)} (mean NLL ${nll.toFixed(5)}) over ${windows} windows of ${window} tokens, ${((performance.now() - start) / 1000).toFixed(1)} s`);
  ctx.device.destroy();
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    const flags = new Set(['chat', 'help']);
    if (command === 'logits') await logitsCommand(new Args(rest, flags));
    else if (command === 'generate') await generateCommand(new Args(rest, flags));
    else if (command === 'perplexity') await perplexityCommand(new Args(rest, flags));
    else if (command === 'convert') await convertCommand(new Args(rest, flags));
    else if (command === undefined || command === '--help' || command === 'help') { console.log(USAGE); return command ? 0 : 2; }
    else throw new UsageError(`unknown command "${command}"`);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) console.error(`q3n: ${e.message}\n${USAGE}`);
    else if (e instanceof Qwen3NextError) console.error(`q3n: ${e.name}: ${e.message}`);
    else console.error(`q3n: ${(e as Error).stack ?? e}`);
    return e instanceof UsageError ? 2 : 1;
  }
}
