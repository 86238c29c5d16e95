// Plain decoding's token loop, one step ahead (src/model/speculative.ts has the speculative one; the engine and
// generate() take their tokens from either).
import type { SampleParams } from '../kernels/sample.ts';
import type { Qwen3NextGpuModel } from './model.ts';
import type { PendingToken } from './next-token.ts';

/** What a token stream needs besides its first token (decodeTokens here, Qwen3NextSpeculativeDecoder.tokens). */
export interface TokenStreamOptions {
  /** The sampling of each generated token, called once per token in order (each call takes the next seeded draw). */
  sampling: () => SampleParams;
  /** The ids so far (prompt, then each generated id as it comes): the repetition penalty reads them. */
  history: number[];
  maxTokens: number;
  /** Told each id the model consumes, in order (the conversation's record of the state). */
  fed?: (id: number) => void;
}

/**
 * Feed `first` (the prompt's last token, or the last one chosen) and yield up to maxTokens chosen tokens, one decode
 * step each. It runs one step ahead when it can: the step that feeds token n is queued (its input sampled on the GPU)
 * before token n is read back, so the CPU encodes it while the GPU runs the step before. A repetition penalty needs
 * each id on the CPU first, so it runs in lockstep. When the consumer stops, the step ahead has fed the last token
 * it took (`fed` says so) and its own sample is dropped.
 */
export async function* decodeTokens(model: Qwen3NextGpuModel, first: number, o: TokenStreamOptions): AsyncGenerator<number> {
  if (o.maxTokens < 1) return;
  const params = o.sampling(), ahead = (params.repetitionPenalty ?? 1) === 1;
  let pending = await model.submitToken(first, params, o.history);
  o.fed?.(first);
  let queued: PendingToken | undefined;
  try {
    for (let n = 1; ; n++) {
      queued = ahead && n + 1 <= o.maxTokens ? await model.submitToken(undefined, o.sampling()) : undefined;
      const next = await pending.read();
      if (queued) o.fed?.(next);
      o.history.push(next);
      yield next;
      if (n === o.maxTokens) return;
      if (!queued) {
        queued = await model.submitToken(next, o.sampling(), o.history);
        o.fed?.(next);
      }
      pending = queued;
      queued = undefined;
    }
  } finally {
    queued?.discard();
  }
}
