// CPU reference forward pass of Qwen3NextForCausalLM, f32, batch 1: the oracle the WebGPU runtime is
// tested against. One class per HF module, in execution order; each step cites REFERENCE.md.
// Activations are row-major Float32Arrays with their shape in a comment; T = tokens in this call.
import type { Checkpoint } from '../checkpoint/checkpoint.ts';
import type { Qwen3NextConfig } from '../config.ts';
import { appendKv, Qwen3NextDynamicCache, type GdnCache, type KvCache } from './dynamic-cache.ts';
import {
  applyRope, attention, causalConv1dSilu, gatedDeltaChunked, gatedDeltaRecurrent, l2Norm, linear, rmsNormGated,
  rmsNorm, routeTopK, ropeInvFreq, ropeYarn, sigmoid, softplus, swiglu, type Rotary,
} from './ops.ts';
import { loadWeights, type AttentionWeights, type DecoderLayerWeights, type GatedDeltaNetWeights, type Qwen3NextWeights, type SparseMoeWeights } from './weights.ts';

/** Intermediate tensors a forward can report; names match the fixture keys (layer -1 = not per layer). */
export type TapName =
  | 'embeddings' | 'layer_output' | 'final_hidden'
  | 'mixer_in' | 'mixer_out' | 'moe_in' | 'moe_out'
  | 'router_logits' | 'router_topk_idx' | 'router_topk_w'
  | 'gdn.q' | 'gdn.k' | 'gdn.v' | 'gdn.g' | 'gdn.beta' | 'gdn.core_out' | 'gdn.final_state';
/** Receives a private copy of each tapped tensor. */
export type Tap = (name: TapName, layer: number, x: Float32Array | Int32Array) => void;

export interface ForwardOptions {
  /** GDN core: 'auto' = chunked for T > 1, recurrence for T = 1 (as HF). */
  gdn?: 'auto' | 'chunked' | 'recurrent';
  chunkSize?: number; // chunked form's C (default 64, HF's)
  tap?: Tap;
  /** What-if studies (bench/cache-aware.measure.ts): may rewrite a layer's routing, idx and w (T, k), in place. */
  route?: (layer: number, logits: Float32Array /* (T, E) */, T: number, route: { idx: Int32Array; w: Float32Array }) => void;
}

const emit = (opts: ForwardOptions, name: TapName, layer: number, x: Float32Array | Int32Array) => opts.tap?.(name, layer, x.slice());

/** Gated DeltaNet token mixer (REFERENCE.md §2). */
export class Qwen3NextGatedDeltaNet {
  constructor(readonly config: Qwen3NextConfig, readonly w: GatedDeltaNetWeights, readonly layer: number) {}

  forward(x: Float32Array /* (T, H) */, T: number, cache: GdnCache, opts: ForwardOptions): Float32Array /* (T, H) */ {
    const c = this.config, w = this.w;
    const H = c.hiddenSize, Hv = c.linearNumValueHeads, dk = c.linearKeyHeadDim, dv = c.linearValueHeadDim;
    const r = c.vPerK, K = c.convKernel, convDim = c.convDim, valueDim = c.valueDim;
    const Hk = c.linearNumKeyHeads, keyDim = c.keyDim;

    // 1. the two projections in their on-disk layout, then HF's fix_query_key_value_ordering: per key head g the
    //    qkvz row holds [q_g (dk) | k_g (dk) | v of heads g·r.. (r·dv) | z of the same heads (r·dv)] and the ba row
    //    [b of heads g·r.. (r) | a of the same heads (r)]
    const qkvzDim = 2 * keyDim + 2 * valueDim, group = 2 * dk + 2 * r * dv;
    const pq = linear(x, w.in_proj_qkvz, T, H, qkvzDim); // (T, Hk, group)
    const pb = linear(x, w.in_proj_ba, T, H, 2 * Hv); // (T, Hk, 2r)
    const mixed = new Float32Array(T * convDim); // (T, convDim) conv input [q (Hk, dk) | k (Hk, dk) | v (Hv, dv)]
    const z = new Float32Array(T * valueDim); // (T, Hv, dv) output gate
    const b = new Float32Array(T * Hv), a = new Float32Array(T * Hv); // (T, Hv) beta / decay inputs
    for (let t = 0; t < T; t++) {
      const m = mixed.subarray(t * convDim, (t + 1) * convDim);
      for (let g = 0; g < Hk; g++) {
        const row = pq.subarray(t * qkvzDim + g * group, t * qkvzDim + (g + 1) * group);
        m.set(row.subarray(0, dk), g * dk);
        m.set(row.subarray(dk, 2 * dk), keyDim + g * dk);
        m.set(row.subarray(2 * dk, 2 * dk + r * dv), 2 * keyDim + g * r * dv);
        z.set(row.subarray(2 * dk + r * dv, group), t * valueDim + g * r * dv);
        const ba = pb.subarray(t * 2 * Hv + g * 2 * r, t * 2 * Hv + (g + 1) * 2 * r);
        b.set(ba.subarray(0, r), t * Hv + g * r);
        a.set(ba.subarray(r, 2 * r), t * Hv + g * r);
      }
    }

    // 2-3. causal depthwise conv (K taps, oldest first) + SiLU, continuing from the conv state
    const conv = causalConv1dSilu(mixed, w.conv1d, cache.conv_state, T, convDim, K); // y (T, convDim)
    cache.conv_state = conv.state;

    // 4-6. split q|k|v, expand key heads to value heads (h reads key head floor(h / r): repeat_interleave), gates
    const q = new Float32Array(T * Hv * dk), k = new Float32Array(T * Hv * dk); // (T, Hv, dk)
    const v = new Float32Array(T * Hv * dv); // (T, Hv, dv)
    const g = new Float32Array(T * Hv), beta = new Float32Array(T * Hv); // (T, Hv)
    for (let t = 0; t < T; t++) {
      const y = conv.y.subarray(t * convDim, (t + 1) * convDim);
      for (let h = 0; h < Hv; h++) {
        const kh = Math.floor(h / r);
        q.set(y.subarray(kh * dk, (kh + 1) * dk), (t * Hv + h) * dk);
        k.set(y.subarray(keyDim + kh * dk, keyDim + (kh + 1) * dk), (t * Hv + h) * dk);
        v.set(y.subarray(2 * keyDim + h * dv, 2 * keyDim + (h + 1) * dv), (t * Hv + h) * dv);
        beta[t * Hv + h] = sigmoid(b[t * Hv + h]);
        g[t * Hv + h] = -Math.exp(w.A_log[h]) * softplus(a[t * Hv + h] + w.dt_bias[h]); // log-decay <= 0
      }
    }
    emit(opts, 'gdn.q', this.layer, q);
    emit(opts, 'gdn.k', this.layer, k);
    emit(opts, 'gdn.v', this.layer, v);
    emit(opts, 'gdn.g', this.layer, g);
    emit(opts, 'gdn.beta', this.layer, beta);

    // 7. L2-normalise q and k per head (eps 1e-6 inside the sqrt), then q *= dk^-1/2
    const qn = l2Norm(q, dk), kn = l2Norm(k, dk);
    const scale = 1 / Math.sqrt(dk);
    for (let i = 0; i < qn.length; i++) qn[i] *= scale;

    // 8. gated delta rule (decay, then delta against the decayed state), state updated in place
    const S = cache.recurrent_state; // (Hv, dk, dv)
    const mode = opts.gdn ?? 'auto';
    const chunked = mode === 'chunked' || (mode === 'auto' && T > 1);
    const o = chunked // (T, Hv, dv)
      ? gatedDeltaChunked(qn, kn, v, g, beta, S, T, Hv, dk, dv, opts.chunkSize ?? 64)
      : gatedDeltaRecurrent(qn, kn, v, g, beta, S, T, Hv, dk, dv);
    emit(opts, 'gdn.core_out', this.layer, o);
    emit(opts, 'gdn.final_state', this.layer, S);

    // 9-10. gated RMSNorm per value head (plain w, shared by heads), then out_proj
    const gated = rmsNormGated(o, z, w.norm, dv, c.rmsNormEps); // (T, Hv, dv)
    return linear(gated, w.out_proj, T, valueDim, H);
  }
}

/** Gated softmax attention with partial NeoX RoPE and a sigmoid output gate (REFERENCE.md §3). */
export class Qwen3NextAttention {
  constructor(readonly config: Qwen3NextConfig, readonly w: AttentionWeights, readonly rotary: Rotary) {}

  forward(x: Float32Array /* (T, H) */, T: number, cache: KvCache, positions: number[]): Float32Array /* (T, H) */ {
    const c = this.config, w = this.w;
    const H = c.hiddenSize, Hq = c.numAttentionHeads, Hkv = c.numKeyValueHeads, D = c.headDim;

    // 1. q_proj gives per head [query_h | gate_h] (interleaved per head, not two halves)
    const qg = linear(x, w.q_proj, T, H, Hq * 2 * D); // (T, Hq, 2D)
    const q = new Float32Array(T * Hq * D), gate = new Float32Array(T * Hq * D); // (T, Hq, D)
    for (let i = 0; i < T * Hq; i++) {
      q.set(qg.subarray(i * 2 * D, i * 2 * D + D), i * D);
      gate.set(qg.subarray(i * 2 * D + D, (i + 1) * 2 * D), i * D);
    }
    // 2-3. k, v; zero-centred RMSNorm of every q and k head
    const qn = rmsNorm(q, w.q_norm, D, c.rmsNormEps); // (T, Hq, D)
    const kn = rmsNorm(linear(x, w.k_proj, T, H, Hkv * D), w.k_norm, D, c.rmsNormEps); // (T, Hkv, D)
    const v = linear(x, w.v_proj, T, H, Hkv * D); // (T, Hkv, D)

    // 4. partial RoPE (first R dims, pairs i / i+R/2) after the norms; the cache keeps rotated keys
    const { invFreq, attentionScaling } = this.rotary;
    applyRope(qn, positions, Hq, D, c.rotaryDim, invFreq, attentionScaling);
    applyRope(kn, positions, Hkv, D, c.rotaryDim, invFreq, attentionScaling);
    const Tk = appendKv(cache, kn, v, T, Hkv, D);

    // 5-7. causal GQA softmax attention (scale D^-1/2), then the sigmoid output gate
    const att = attention(qn, cache.keys, cache.values, T, Tk, Hq, Hkv, D, 1 / Math.sqrt(D)); // (T, Hq, D)
    for (let i = 0; i < att.length; i++) att[i] *= sigmoid(gate[i]);

    // 8. o_proj
    return linear(att, w.o_proj, T, Hq * D, H);
  }
}

/** Routed experts (softmax → top-k → optional renorm) plus a sigmoid-gated shared expert (REFERENCE.md §5). */
export class Qwen3NextSparseMoeBlock {
  constructor(readonly config: Qwen3NextConfig, readonly w: SparseMoeWeights, readonly layer: number) {}

  forward(x: Float32Array /* (T, H) */, T: number, opts: ForwardOptions): Float32Array /* (T, H) */ {
    const c = this.config, w = this.w;
    const H = c.hiddenSize, E = c.numExperts, k = c.numExpertsPerTok, I = c.moeIntermediateSize;

    // 1-4. router
    const logits = linear(x, w.gate, T, H, E); // (T, E)
    const route = routeTopK(logits, T, E, k, c.normTopkProb); // idx, w: (T, k), descending probability
    opts.route?.(this.layer, logits, T, route);
    emit(opts, 'router_logits', this.layer, logits);
    emit(opts, 'router_topk_idx', this.layer, route.idx);
    emit(opts, 'router_topk_w', this.layer, route.w);

    // 5. routed experts, in expert-index order like HF's eager loop: gather the expert's tokens, SwiGLU, scatter-add
    const y = new Float32Array(T * H);
    for (let e = 0; e < E; e++) {
      const rows: number[] = [], weights: number[] = [];
      for (let i = 0; i < T * k; i++) {
        if (route.idx[i] === e) {
          rows.push(Math.floor(i / k));
          weights.push(route.w[i]);
        }
      }
      if (rows.length === 0) continue;
      const xs = new Float32Array(rows.length * H); // (n, H)
      rows.forEach((t, j) => xs.set(x.subarray(t * H, (t + 1) * H), j * H));
      const ex = w.experts[e];
      const out = swiglu(xs, ex.gate_proj, ex.up_proj, ex.down_proj, rows.length, H, I); // (n, H)
      rows.forEach((t, j) => {
        for (let d = 0; d < H; d++) y[t * H + d] += weights[j] * out[j * H + d];
      });
    }

    // 6-8. shared expert, scaled per token by sigmoid(x · shared_expert_gate)
    const s = swiglu(x, w.shared_expert.gate_proj, w.shared_expert.up_proj, w.shared_expert.down_proj, T, H, c.sharedExpertIntermediateSize);
    const sg = linear(x, w.shared_expert_gate, T, H, 1); // (T, 1)
    for (let t = 0; t < T; t++) {
      const gt = sigmoid(sg[t]);
      for (let d = 0; d < H; d++) y[t * H + d] += gt * s[t * H + d];
    }
    return y;
  }
}

/** Pre-norm residual block: h = x + Mixer(norm1(x)); out = h + MoE(norm2(h)). */
export class Qwen3NextDecoderLayer {
  readonly linear_attn?: Qwen3NextGatedDeltaNet;
  readonly self_attn?: Qwen3NextAttention;
  readonly mlp: Qwen3NextSparseMoeBlock;

  constructor(readonly config: Qwen3NextConfig, readonly w: DecoderLayerWeights, readonly layer: number, rotary: Rotary) {
    if (w.linear_attn) this.linear_attn = new Qwen3NextGatedDeltaNet(config, w.linear_attn, layer);
    if (w.self_attn) this.self_attn = new Qwen3NextAttention(config, w.self_attn, rotary);
    this.mlp = new Qwen3NextSparseMoeBlock(config, w.mlp, layer);
  }

  forward(x: Float32Array /* (T, H) */, T: number, cache: Qwen3NextDynamicCache, positions: number[], opts: ForwardOptions): Float32Array {
    const H = this.config.hiddenSize, eps = this.config.rmsNormEps, l = this.layer;
    const mixerIn = rmsNorm(x, this.w.input_layernorm, H, eps);
    emit(opts, 'mixer_in', l, mixerIn);
    const lc = cache.layers[l];
    const mixerOut = lc.kind === 'linear_attention'
      ? this.linear_attn!.forward(mixerIn, T, lc, opts)
      : this.self_attn!.forward(mixerIn, T, lc, positions);
    emit(opts, 'mixer_out', l, mixerOut);
    const h = new Float32Array(T * H);
    for (let i = 0; i < h.length; i++) h[i] = x[i] + mixerOut[i];

    const moeIn = rmsNorm(h, this.w.post_attention_layernorm, H, eps);
    emit(opts, 'moe_in', l, moeIn);
    const moeOut = this.mlp.forward(moeIn, T, opts);
    emit(opts, 'moe_out', l, moeOut);
    for (let i = 0; i < h.length; i++) h[i] += moeOut[i];
    return h;
  }
}

export class Qwen3NextForCausalLM {
  readonly config: Qwen3NextConfig;
  readonly layers: Qwen3NextDecoderLayer[];
  readonly rotary: Rotary; // HF's fp32 inv_freq (R/2) and attention_scaling (YaRN; else 1)

  constructor(readonly w: Qwen3NextWeights) {
    this.config = w.config;
    const c = w.config;
    this.rotary = c.ropeScaling.type === 'yarn' ? ropeYarn(c.ropeTheta, c.rotaryDim, c.ropeScaling) : { invFreq: ropeInvFreq(c.ropeTheta, c.rotaryDim), attentionScaling: 1 };
    this.layers = w.layers.map((lw, i) => new Qwen3NextDecoderLayer(c, lw, i, this.rotary));
  }

  static async load(ckpt: Checkpoint): Promise<Qwen3NextForCausalLM> {
    return new Qwen3NextForCausalLM(await loadWeights(ckpt));
  }

  newCache(): Qwen3NextDynamicCache {
    return new Qwen3NextDynamicCache(this.config);
  }

  /** Runs T tokens from cache.position (prefill, continuation or a T = 1 decode step); returns logits (T, V). */
  forward(ids: ArrayLike<number>, cache: Qwen3NextDynamicCache, opts: ForwardOptions = {}): Float32Array {
    const c = this.config, H = c.hiddenSize, V = c.vocabSize, T = ids.length;
    const positions = Array.from({ length: T }, (_, t) => cache.position + t);

    let h: Float32Array = new Float32Array(T * H); // (T, H)
    for (let t = 0; t < T; t++) {
      if (!(ids[t] >= 0 && ids[t] < V)) throw new RangeError(`token id ${ids[t]} outside the vocabulary (${V})`);
      h.set(this.w.embed_tokens.subarray(ids[t] * H, (ids[t] + 1) * H), t * H);
    }
    emit(opts, 'embeddings', -1, h);
    for (const layer of this.layers) {
      h = layer.forward(h, T, cache, positions, opts);
      emit(opts, 'layer_output', layer.layer, h);
    }
    cache.position += T;

    const hn = rmsNorm(h, this.w.norm, H, c.rmsNormEps); // (T, H) = HF hidden_states[-1]
    emit(opts, 'final_hidden', -1, hn);
    return linear(hn, this.w.lm_head, T, H, V);
  }
}

/** A Tap that keeps the last value of every tapped tensor, keyed like the fixtures ("L0.gdn.q", "embeddings"). */
export function recordTaps() {
  const seen = new Map<string, Float32Array | Int32Array>();
  const key = (name: TapName, layer: number) => (layer < 0 ? name : `L${layer}.${name}`);
  return {
    tap: ((name, layer, x) => void seen.set(key(name, layer), x)) as Tap,
    get(name: TapName, layer = -1): Float32Array | Int32Array {
      const x = seen.get(key(name, layer));
      if (!x) throw new Error(`no tap ${key(name, layer)} recorded`);
      return x;
    },
  };
}
