// CPU reference of Qwen3-Next's multi-token-prediction layer, written from vLLM's Qwen3NextMultiTokenPredictor
// (vllm/model_executor/models/qwen3_next_mtp.py), which HF transformers does not implement:
//   e = pre_fc_norm_embedding(embed_tokens(next_id))     the token after the one whose hidden state this is
//   g = pre_fc_norm_hidden(hidden)                        the main model's final hidden state, after model.norm
//   x = fc(cat(e, g))                                     (H, 2H), no bias, e first
//   x = decoder_layer(x)                                  mtp.layers.0: full attention (its own KV cache) + MoE
//   logits = lm_head(norm(x))                             predicts the token after next_id; lm_head shared
// Row t of a call sits at position pos0 + t of the layer's own cache, as the main model's rows do.
import type { Qwen3NextConfig } from '../config.ts';
import { Qwen3NextDynamicCache } from './dynamic-cache.ts';
import { Qwen3NextDecoderLayer, type Qwen3NextForCausalLM } from './model.ts';
import { linear, rmsNorm } from './ops.ts';
import type { MtpWeights } from './weights.ts';

export class Qwen3NextMultiTokenPredictor {
  readonly config: Qwen3NextConfig;
  private readonly layer: Qwen3NextDecoderLayer;

  constructor(readonly main: Qwen3NextForCausalLM, readonly w: MtpWeights) {
    this.config = main.config;
    this.layer = new Qwen3NextDecoderLayer(this.config, w.layer, 0, main.rotary);
  }

  /** The MTP layer's cache: one full-attention layer (index 0, as the decoder layer reads it). */
  newCache(): Qwen3NextDynamicCache {
    return new Qwen3NextDynamicCache({ ...this.config, layerTypes: ['full_attention'] });
  }

  /**
   * Logits (T, V) for T rows: hidden (T, H) the main model's final normed hidden states at some positions, nextIds
   * the token that followed each of them. Appends T keys to `cache` from its position.
   */
  forward(nextIds: ArrayLike<number>, hidden: Float32Array, cache: Qwen3NextDynamicCache): Float32Array {
    const c = this.config, H = c.hiddenSize, V = c.vocabSize, T = nextIds.length, eps = c.rmsNormEps;
    const emb = new Float32Array(T * H);
    for (let t = 0; t < T; t++) emb.set(this.main.w.embed_tokens.subarray(nextIds[t] * H, (nextIds[t] + 1) * H), t * H);
    const e = rmsNorm(emb, this.w.pre_fc_norm_embedding, H, eps);
    const g = rmsNorm(hidden, this.w.pre_fc_norm_hidden, H, eps);
    const cat = new Float32Array(T * 2 * H); // (T, 2H): [e | g] per row
    for (let t = 0; t < T; t++) {
      cat.set(e.subarray(t * H, (t + 1) * H), t * 2 * H);
      cat.set(g.subarray(t * H, (t + 1) * H), t * 2 * H + H);
    }
    const x = linear(cat, this.w.fc, T, 2 * H, H);
    const positions = Array.from({ length: T }, (_, t) => cache.position + t);
    const h = this.layer.forward(x, T, cache, positions, {});
    cache.position += T;
    return linear(rmsNorm(h, this.w.norm, H, eps), this.main.w.lm_head, T, H, V);
  }
}
