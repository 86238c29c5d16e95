// Token generation on the GPU: the next token is chosen by the sampler kernel right after lm_head, in the
// same submit, so each step reads back 4 bytes instead of V logits. Mirrors HF's GenerationConfig names.
import { decodeTokens, type TokenStreamOptions } from './decode.ts';
import type { Qwen3NextGpuModel } from './model.ts';
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
