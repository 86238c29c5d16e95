// q3n: the command line. `q3n logits` checks the GPU forward pass against any reference; `q3n generate`
// chats with a model. Runs on WebGPU through Dawn (SwiftShader when there is no GPU).
import { writeFile } from 'node:fs/promises';
import { encodeSafetensors } from '../checkpoint/write.ts';
import { Qwen3NextError } from '../errors.ts';
import { Args, UsageError } from './args.ts';
import { generateCommand } from './generate.ts';
import { openModel } from './open-model.ts';
import { convertCommand, CONVERT_USAGE } from './convert.ts';

const USAGE = `usage:
  q3n logits   --model <HF checkpoint dir> --prompt-ids 5,17,42 [--decode-ids 7,8] [--weights f32|int4] --out out.safetensors
  q3n generate --model <HF checkpoint dir> --prompt "text" [--max-tokens 48] [--temperature 0] [--top-k 0] [--top-p 1] [--seed 0] [--chat] [--weights f32|int4]
  ${CONVERT_USAGE}`;


/** Prefill logits (T, V) through chunked prefill, then one recurrent decode step per teacher-forced decode id. */
async function logitsCommand(args: Args) {
  args.allow(['model', 'prompt-ids', 'decode-ids', 'weights', 'out']);
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
  ctx.device.destroy();
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    const flags = new Set(['chat', 'help']);
    if (command === 'logits') await logitsCommand(new Args(rest, flags));
    else if (command === 'generate') await generateCommand(new Args(rest, flags));
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
