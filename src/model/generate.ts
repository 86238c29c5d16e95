// Token generation on the GPU: the next token is chosen by the sampler kernel right after lm_head, in the
// same submit, so each step reads back 4 bytes instead of V logits. Mirrors HF's GenerationConfig names.
import type { SampleParams } from '../kernels/sample.ts';
import type { Qwen3NextGpuModel } from './model.ts';
import type { PendingToken } from './next-token.ts';
import type { Qwen3NextSpeculativeDecoder } from './speculative.ts';

export interface GenerationConfig {
  max_new_tokens: number;
  temperature: number; // 0: greedy
  top_k: number; // 0: off
  top_p: number; // 1: off
  repetition_penalty: number; // 1: off
  seed: number;
  eos_token_id: number[];
}

export const DEFAULT_GENERATION: GenerationConfig = {
  max_new_tokens: 256,
  temperature: 0,
  top_k: 0,
  top_p: 1,
  repetition_penalty: 1,
  seed: 0,
  eos_token_id: [],
};

/** mulberry32: a small seeded PRNG, so `seed` reproduces a sampled reply. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

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

/**
 * Prefill `promptIds` from the cache's position, then yield up to max_new_tokens tokens, stopping after an
 * EOS token (which is yielded) or when `signal` aborts (checked before every token). With `speculative`, its MTP
 * layer drafts and the model verifies (src/model/speculative.ts): the same tokens, fewer steps.
 */
export async function* generate(model: Qwen3NextGpuModel, promptIds: ArrayLike<number>, config: Partial<GenerationConfig> = {}, signal?: AbortSignal, speculative?: Qwen3NextSpeculativeDecoder): AsyncGenerator<number> {
  const cfg = { ...DEFAULT_GENERATION, ...config };
  const random = seededRandom(cfg.seed);
  const prompt = Array.from(promptIds);
  if (prompt.length === 0) throw new RangeError('generate: an empty prompt');
  const o: TokenStreamOptions = {
    sampling: () => ({ temperature: cfg.temperature, topK: cfg.top_k, topP: cfg.top_p, repetitionPenalty: cfg.repetition_penalty, random: random() }),
    history: prompt.slice(),
    maxTokens: cfg.max_new_tokens,
  };
  const head = prompt.slice(0, -1), last = prompt[prompt.length - 1];
  if (head.length) await (speculative ? speculative.prefill(head) : model.forward(head));
  for await (const next of speculative ? speculative.tokens(last, o) : decodeTokens(model, last, o)) {
    if (signal?.aborted) return;
    yield next;
    if (cfg.eos_token_id.includes(next)) return;
  }
}
