// Per-layer decode state of the CPU reference (batch 1, f32), one entry per layer chosen by layer_types.
// Layouts follow HF except the conv state, which keeps only the K-1 columns decode reads (HF keeps K and
// never reads the oldest; compare with fixture conv_state[..., 1:]).
import type { Qwen3NextConfig } from '../config.ts';

export interface GdnCache {
  kind: 'linear_attention';
  conv_state: Float32Array; // (convDim, K-1): previous K-1 pre-conv q|k|v inputs, oldest first
  recurrent_state: Float32Array; // (Hv, dk, dv): delta-rule state S, HF/FLA order
}

export interface KvCache {
  kind: 'full_attention';
  keys: Float32Array; // (Hkv, length, D): post-k_norm, post-RoPE
  values: Float32Array; // (Hkv, length, D)
  length: number;
}

export type LayerCache = GdnCache | KvCache;

export class Qwen3NextDynamicCache {
  /** Absolute position of the next token = tokens seen so far. */
  position = 0;
  readonly layers: LayerCache[];

  constructor(readonly config: Qwen3NextConfig) {
    const c = config;
    this.layers = c.layerTypes.map((type): LayerCache =>
      type === 'linear_attention'
        ? {
            kind: type,
            conv_state: new Float32Array(c.convDim * (c.convKernel - 1)),
            recurrent_state: new Float32Array(c.linearNumValueHeads * c.linearKeyHeadDim * c.linearValueHeadDim),
          }
        : { kind: type, keys: new Float32Array(0), values: new Float32Array(0), length: 0 },
    );
  }
}

/** Append T new keys/values given as (T, Hkv, D) to a (Hkv, length, D) cache; returns the new length. */
export function appendKv(cache: KvCache, k: Float32Array, v: Float32Array, T: number, Hkv: number, D: number): number {
  const old = cache.length, len = old + T;
  const keys = new Float32Array(Hkv * len * D), values = new Float32Array(Hkv * len * D);
  for (let h = 0; h < Hkv; h++) {
    keys.set(cache.keys.subarray(h * old * D, (h + 1) * old * D), h * len * D);
    values.set(cache.values.subarray(h * old * D, (h + 1) * old * D), h * len * D);
    for (let t = 0; t < T; t++) {
      keys.set(k.subarray((t * Hkv + h) * D, (t * Hkv + h + 1) * D), (h * len + old + t) * D);
      values.set(v.subarray((t * Hkv + h) * D, (t * Hkv + h + 1) * D), (h * len + old + t) * D);
    }
  }
  cache.keys = keys;
  cache.values = values;
  cache.length = len;
  return len;
}

/**
 * The cache in the fixtures' stacked layouts: conv_state (n_linear, convDim, K-1) (= HF conv_state[..., 1:]),
 * recurrent_state (n_linear, Hv, dk, dv), kv_keys / kv_values (n_full, Hkv, T, D).
 */
export function stackedStates(cache: Qwen3NextDynamicCache) {
  const cat = (xs: Float32Array[]) => {
    const out = new Float32Array(xs.reduce((n, x) => n + x.length, 0));
    xs.reduce((o, x) => (out.set(x, o), o + x.length), 0);
    return out;
  };
  const gdn = cache.layers.filter((l): l is GdnCache => l.kind === 'linear_attention');
  const kv = cache.layers.filter((l): l is KvCache => l.kind === 'full_attention');
  return {
    conv_state: cat(gdn.map((l) => l.conv_state)),
    recurrent_state: cat(gdn.map((l) => l.recurrent_state)),
    kv_keys: cat(kv.map((l) => l.keys)),
    kv_values: cat(kv.map((l) => l.values)),
  };
}
