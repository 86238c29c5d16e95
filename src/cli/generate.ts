// `q3n generate`: prompt in, reply out, streamed to stdout as tokens are decoded.
import { DecodeStream } from '../tokenizer/stream.ts';
import { loadTokenizerFromDir } from '../tokenizer/node.ts';
import { generate } from '../model/generate.ts';
import { MODEL_OPTIONS, openModel } from './open-model.ts';
import { Qwen3NextSpeculativeDecoder } from '../model/speculative.ts';
import { UsageError, type Args } from './args.ts';

export async function generateCommand(args: Args) {
  args.allow([...MODEL_OPTIONS, 'prompt', 'max-tokens', 'temperature', 'top-k', 'top-p', 'repetition-penalty', 'seed', 'chat', 'draft-tokens']);
  const draftTokens = args.num('draft-tokens', 0);
  if (![0, 1, 2, 3].includes(draftTokens)) throw new UsageError(`--draft-tokens must be 1, 2 or 3 (0: off), got ${draftTokens}`);
  if (draftTokens && args.num('repetition-penalty', 1) !== 1) throw new UsageError('--draft-tokens decodes without a repetition penalty: drop one of them');
  const prompt = args.str('prompt');
  const tokenizer = await loadTokenizerFromDir(args.str('model'));
  const ids = args.flag('chat')
    ? tokenizer.encodeChat([{ role: 'user', content: prompt }], { addGenerationPrompt: true })
    : tokenizer.encode(prompt);
  const { model, ctx } = await openModel(args, { mtp: draftTokens > 0 });
  if (draftTokens && !model.mtp) throw new UsageError(`--draft-tokens needs the model's multi-token-prediction layer, and ${args.str('model')} has none (no mtp.* tensors)`);
  const spec = draftTokens ? new Qwen3NextSpeculativeDecoder(model, { draftTokens }) : undefined;
  const stream = new DecodeStream(tokenizer, { skipSpecialTokens: true });
  const eos = [...new Set([...tokenizer.eosTokenIds, ...model.config.eosTokenIds])];
  const config = {
    max_new_tokens: args.num('max-tokens', 48),
    temperature: args.num('temperature', 0),
    top_k: args.num('top-k', 0),
    top_p: args.num('top-p', 1),
    repetition_penalty: args.num('repetition-penalty', 1),
    seed: args.num('seed', 0),
    eos_token_id: eos,
  };
  for await (const id of generate(model, ids, config, undefined, spec)) process.stdout.write(stream.step(id));
  process.stdout.write(stream.flush() + '\n');
  if (spec) {
    const s = spec.stats;
    process.stderr.write(`speculative: ${s.accepted} of ${s.drafted} drafts accepted in ${s.rounds} verify steps (${((s.rounds + s.accepted) / Math.max(1, s.rounds)).toFixed(2)} tokens a step)${s.plain ? `, ${s.plain} tokens without (acceptance too low)` : ''}\n`);
  }
  ctx.device.destroy();
}
