// `q3n generate`: prompt in, reply out, streamed to stdout as tokens are decoded.
import { DecodeStream } from '../tokenizer/stream.ts';
import { loadTokenizerFromDir } from '../tokenizer/node.ts';
import { generate } from '../model/generate.ts';
import { MODEL_OPTIONS, openModel } from './open-model.ts';
import type { Args } from './args.ts';

export async function generateCommand(args: Args) {
  args.allow([...MODEL_OPTIONS, 'prompt', 'max-tokens', 'temperature', 'top-k', 'top-p', 'repetition-penalty', 'seed', 'chat']);
  const prompt = args.str('prompt');
  const tokenizer = await loadTokenizerFromDir(args.str('model'));
  const ids = args.flag('chat')
    ? tokenizer.encodeChat([{ role: 'user', content: prompt }], { addGenerationPrompt: true })
    : tokenizer.encode(prompt);
  const { model, ctx } = await openModel(args);
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
  for await (const id of generate(model, ids, config)) process.stdout.write(stream.step(id));
  process.stdout.write(stream.flush() + '\n');
  ctx.device.destroy();
}
