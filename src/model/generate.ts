// Token generation on the GPU: the next token is chosen by the sampler kernel right after lm_head, in the
// same submit, so each step reads back 4 bytes instead of V logits. Mirrors HF's GenerationConfig names.
import type { Qwen3NextGpuModel } from './model.ts';

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
 * EOS token (which is yielded) or when `signal` aborts (checked before every step).
 */
export async function* generate(model: Qwen3NextGpuModel, promptIds: ArrayLike<number>, config: Partial<GenerationConfig> = {}, signal?: AbortSignal): AsyncGenerator<number> {
  const cfg = { ...DEFAULT_GENERATION, ...config };
  const random = seededRandom(cfg.seed);
  const history = Array.from(promptIds);
  const sampling = () => ({ temperature: cfg.temperature, topK: cfg.top_k, topP: cfg.top_p, repetitionPenalty: cfg.repetition_penalty, random: random() });
  let next = await model.nextToken(promptIds, sampling(), history);
  for (let i = 0; i < cfg.max_new_tokens; i++) {
    if (signal?.aborted) return;
    yield next;
    history.push(next);
    if (cfg.eos_token_id.includes(next) || i + 1 === cfg.max_new_tokens) return;
    next = await model.nextToken([next], sampling(), history);
  }
}
