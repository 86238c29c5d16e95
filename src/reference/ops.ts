// CPU reference ops in f32 (Float32Array, row-major). The oracle every WGSL kernel is tested against.
// Written for reading: one function per step of REFERENCE.md, shapes in comments, no cleverness.
// Accumulation is in f64 (JS numbers) and rounded to f32 on store; results sit well inside fp32 tolerances.

import type { YarnRope } from '../config.ts';
import { f16BitsToF32 } from '../quant/formats.ts';

export const silu = (x: number) => x / (1 + Math.exp(-x));
export const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
/** PyTorch softplus (beta 1, threshold 20). */
export const softplus = (x: number) => (x > 20 ? x : Math.log1p(Math.exp(x)));

/** y[T, N] = x[T, K] · W[N, K]ᵀ (PyTorch Linear, no bias). */
export function linear(x: Float32Array, w: Float32Array, T: number, K: number, N: number): Float32Array {
  const y = new Float32Array(T * N);
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[t * K + k] * w[n * K + k];
      y[t * N + n] = s;
    }
  }
  return y;
}

/** WGSL's round(): to the nearest integer, ties to even. */
const roundEven = (v: number) => (Math.abs(v % 1) === 0.5 ? 2 * Math.round(v / 2) : Math.round(v));

/**
 * x[T, K] quantized as matmul_int8.wgsl's quantize_rows does (f32 steps emulated with Math.fround): per group of 32,
 * int8 values round(x · 127 / max|x|), the scale max|x| / 127 and the group's exact sum.
 */
export function quantizeRowsInt8(x: Float32Array, T: number, K: number): { q: Int8Array; scale: Float32Array; sum: Float32Array } {
  const G = Math.ceil(K / 32), q = new Int8Array(T * G * 32), scale = new Float32Array(T * G), sum = new Float32Array(T * G);
  for (let t = 0; t < T; t++) {
    for (let g = 0; g < G; g++) {
      let amax = 0, s = 0;
      for (let k = g * 32; k < Math.min(K, g * 32 + 32); k++) {
        amax = Math.max(amax, Math.abs(x[t * K + k]));
        s = Math.fround(s + x[t * K + k]);
      }
      const inv = amax > 0 ? Math.fround(127 / amax) : 0;
      for (let k = g * 32; k < Math.min(K, g * 32 + 32); k++) q[(t * G + g) * 32 + k - g * 32] = roundEven(Math.fround(x[t * K + k] * inv));
      scale[t * G + g] = Math.fround(amax / 127);
      sum[t * G + g] = s;
    }
  }
  return { q, scale, sum };
}

/**
 * What gemm_int8 computes: y[T, N] = x[T, K] · Wᵀ with x quantized by quantizeRowsInt8 and W packed q4 (quant.wgsl's
 * layout; unsigned nibbles q, per group (scale s, min m) as two f16): Σ_g s·a·Σ_k q·xq + m·Σx.
 */
export function linearInt8Q4(x: Float32Array, w: Uint32Array, T: number, K: number, N: number): Float32Array {
  const G = Math.ceil(K / 32), xq = quantizeRowsInt8(x, T, K), y = new Float32Array(T * N);
  for (let n = 0; n < N; n++) {
    for (let t = 0; t < T; t++) {
      let acc = 0;
      for (let g = 0; g < G; g++) {
        const sm = w[N * G * 4 + n * G + g], s = f16BitsToF32(sm & 0xffff), m = f16BitsToF32(sm >>> 16);
        let d = 0;
        for (let k = 0; k < 32; k++) d += ((w[(n * G + g) * 4 + (k >> 3)] >>> (4 * (k & 7))) & 15) * xq.q[(t * G + g) * 32 + k];
        acc += d * (xq.scale[t * G + g] * s) + m * xq.sum[t * G + g];
      }
      y[t * N + n] = acc;
    }
  }
  return y;
}

/** Qwen3NextRMSNorm (the weight zero-centred) over rows of width D: y = x · rsqrt(mean(x²) + eps) · (1 + w).  x: [rows, D], w: [D]. */
export function rmsNorm(x: Float32Array, w: Float32Array, D: number, eps: number): Float32Array {
  const y = new Float32Array(x.length);
  for (let r = 0; r < x.length / D; r++) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[r * D + i] ** 2;
    const inv = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) y[r * D + i] = x[r * D + i] * inv * (1 + w[i]);
  }
  return y;
}

/** Gated RMSNorm (GDN output): y = w · (o · rsqrt(mean(o²) + eps)) · silu(z), plain w.  o, z: [rows, D], w: [D]. */
export function rmsNormGated(o: Float32Array, z: Float32Array, w: Float32Array, D: number, eps: number): Float32Array {
  const y = new Float32Array(o.length);
  for (let r = 0; r < o.length / D; r++) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += o[r * D + i] ** 2;
    const inv = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) y[r * D + i] = w[i] * (o[r * D + i] * inv) * silu(z[r * D + i]);
  }
  return y;
}

/** L2 normalisation per row of width D with eps inside the sqrt (GDN q/k, eps 1e-6 hard-coded in HF). */
export function l2Norm(x: Float32Array, D: number, eps = 1e-6): Float32Array {
  const y = new Float32Array(x.length);
  for (let r = 0; r < x.length / D; r++) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[r * D + i] ** 2;
    const inv = 1 / Math.sqrt(ss + eps);
    for (let i = 0; i < D; i++) y[r * D + i] = x[r * D + i] * inv;
  }
  return y;
}

/**
 * Causal depthwise conv1d (kernel K, no bias) + SiLU over T tokens, continuing from a conv state.
 * x: [T, C] conv inputs; w: [C, K] (HF conv1d.weight [C, 1, K]); state: [C, K-1], the previous K-1 inputs,
 * oldest first (zeros for a fresh sequence). Returns y [T, C] and the new state [C, K-1].
 * Tap w[c, K-1] multiplies the current token, w[c, 0] the token K-1 steps back.
 */
export function causalConv1dSilu(x: Float32Array, w: Float32Array, state: Float32Array, T: number, C: number, K: number) {
  const y = new Float32Array(T * C);
  const newState = new Float32Array(C * (K - 1));
  // input at time tau (relative to this call): tau < 0 reads state[c, K-1+tau]
  const at = (c: number, tau: number) => (tau >= 0 ? x[tau * C + c] : state[c * (K - 1) + (K - 1 + tau)]);
  for (let c = 0; c < C; c++) {
    for (let t = 0; t < T; t++) {
      let s = 0;
      for (let j = 0; j < K; j++) s += w[c * K + j] * at(c, t - (K - 1) + j);
      y[t * C + c] = silu(s);
    }
    for (let j = 0; j < K - 1; j++) newState[c * (K - 1) + j] = at(c, T - (K - 1) + j);
  }
  return { y, state: newState };
}

/**
 * Gated delta rule, token by token (REFERENCE.md §2.1 step 8), for all value heads.
 * q, k: [T, Hv, dk] already L2-normalised (q also scaled by dk^-1/2) and expanded to value heads;
 * v: [T, Hv, dv]; g, beta: [T, Hv]; S: [Hv, dk, dv] initial state (HF order), updated in place.
 * Returns o: [T, Hv, dv].
 */
export function gatedDeltaRecurrent(
  q: Float32Array, k: Float32Array, v: Float32Array, g: Float32Array, beta: Float32Array,
  S: Float32Array, T: number, Hv: number, dk: number, dv: number,
): Float32Array {
  const o = new Float32Array(T * Hv * dv);
  const e = new Float64Array(dv);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < Hv; h++) {
      const s0 = h * dk * dv, qk0 = (t * Hv + h) * dk, v0 = (t * Hv + h) * dv;
      const alpha = Math.exp(g[t * Hv + h]);
      for (let i = 0; i < dk * dv; i++) S[s0 + i] *= alpha; // decay first
      e.fill(0);
      for (let a = 0; a < dk; a++) for (let b = 0; b < dv; b++) e[b] += S[s0 + a * dv + b] * k[qk0 + a]; // S'ᵀk
      for (let b = 0; b < dv; b++) e[b] = beta[t * Hv + h] * (v[v0 + b] - e[b]); // u = β(v − S'ᵀk)
      for (let a = 0; a < dk; a++) for (let b = 0; b < dv; b++) S[s0 + a * dv + b] += k[qk0 + a] * e[b]; // S += k uᵀ
      for (let b = 0; b < dv; b++) {
        let s = 0;
        for (let a = 0; a < dk; a++) s += S[s0 + a * dv + b] * q[qk0 + a]; // o = Sᵀq (updated state)
        o[v0 + b] = s;
      }
    }
  }
  return o;
}

/**
 * Gated delta rule, chunked (REFERENCE.md §2.3, the UT/WY form), chunk size C. Same arguments and result
 * as gatedDeltaRecurrent. Only non-positive exponents are ever exponentiated.
 */
export function gatedDeltaChunked(
  q: Float32Array, k: Float32Array, v: Float32Array, g: Float32Array, beta: Float32Array,
  S: Float32Array, T: number, Hv: number, dk: number, dv: number, C = 64,
): Float32Array {
  const o = new Float32Array(T * Hv * dv);
  for (let h = 0; h < Hv; h++) {
    const Sh = new Float64Array(dk * dv);
    for (let i = 0; i < dk * dv; i++) Sh[i] = S[h * dk * dv + i];
    for (let c0 = 0; c0 < T; c0 += C) {
      const n = Math.min(C, T - c0); // padded steps (g=0, β=0, k=0) leave the state exact, so just stop at n
      const K_ = (i: number, a: number) => k[((c0 + i) * Hv + h) * dk + a];
      const Q_ = (i: number, a: number) => q[((c0 + i) * Hv + h) * dk + a];
      const V_ = (i: number, b: number) => v[((c0 + i) * Hv + h) * dv + b];
      const B_ = (i: number) => beta[(c0 + i) * Hv + h];
      const gam = new Float64Array(n); // γ_i = Σ_{m≤i} g_m
      for (let i = 0, acc = 0; i < n; i++) gam[i] = acc += g[(c0 + i) * Hv + h];
      // A_ij = β_i (k_i·k_j) exp(γ_i − γ_j), j < i; T = (I + A)⁻¹ applied by forward substitution:
      // rows of U = T·diag(β)V and W = T·diag(β e^γ)K satisfy u_i = β_i v_i − Σ_{j<i} A_ij u_j.
      const U = new Float64Array(n * dv), W = new Float64Array(n * dk);
      for (let i = 0; i < n; i++) {
        for (let b = 0; b < dv; b++) U[i * dv + b] = B_(i) * V_(i, b);
        for (let a = 0; a < dk; a++) W[i * dk + a] = B_(i) * Math.exp(gam[i]) * K_(i, a);
        for (let j = 0; j < i; j++) {
          let kk = 0;
          for (let a = 0; a < dk; a++) kk += K_(i, a) * K_(j, a);
          const Aij = B_(i) * kk * Math.exp(gam[i] - gam[j]);
          for (let b = 0; b < dv; b++) U[i * dv + b] -= Aij * U[j * dv + b];
          for (let a = 0; a < dk; a++) W[i * dk + a] -= Aij * W[j * dk + a];
        }
      }
      // Ṽ = U − W·S
      const Vn = new Float64Array(n * dv);
      for (let i = 0; i < n; i++) {
        for (let b = 0; b < dv; b++) {
          let s = 0;
          for (let a = 0; a < dk; a++) s += W[i * dk + a] * Sh[a * dv + b];
          Vn[i * dv + b] = U[i * dv + b] - s;
        }
      }
      // O = diag(e^γ) Q S + (tril_incl(Q Kᵀ) ⊙ Γ) Ṽ
      for (let i = 0; i < n; i++) {
        const eg = Math.exp(gam[i]);
        const row = new Float64Array(dv);
        for (let b = 0; b < dv; b++) {
          let s = 0;
          for (let a = 0; a < dk; a++) s += Q_(i, a) * Sh[a * dv + b];
          row[b] = eg * s;
        }
        for (let j = 0; j <= i; j++) {
          let qk = 0;
          for (let a = 0; a < dk; a++) qk += Q_(i, a) * K_(j, a);
          const f = qk * Math.exp(gam[i] - gam[j]);
          for (let b = 0; b < dv; b++) row[b] += f * Vn[j * dv + b];
        }
        for (let b = 0; b < dv; b++) o[((c0 + i) * Hv + h) * dv + b] = row[b];
      }
      // S_next = e^{γ_last} S + (K ⊙ e^{γ_last − γ})ᵀ Ṽ
      const gl = gam[n - 1];
      for (let a = 0; a < dk; a++) {
        for (let b = 0; b < dv; b++) {
          let s = Math.exp(gl) * Sh[a * dv + b];
          for (let i = 0; i < n; i++) s += K_(i, a) * Math.exp(gl - gam[i]) * Vn[i * dv + b];
          Sh[a * dv + b] = s;
        }
      }
    }
    for (let i = 0; i < dk * dv; i++) S[h * dk * dv + i] = Sh[i];
  }
  return o;
}

/** HF inv_freq in f32: 1 / θ^(2i/R), i < R/2. */
export function ropeInvFreq(theta: number, R: number): Float32Array {
  const f = new Float32Array(R / 2);
  for (let i = 0; i < R / 2; i++) f[i] = 1 / Math.fround(theta ** Math.fround((2 * i) / R));
  return f;
}

/** HF's rotary parameters: inv_freq (R/2) and attention_scaling, which multiplies cos and sin. */
export interface Rotary {
  invFreq: Float32Array;
  attentionScaling: number;
}

/**
 * transformers' _compute_yarn_parameters (modeling_rope_utils.py), step by step: pos_freqs, the extrapolated and
 * interpolated inverse frequencies, the correction range from beta_fast / beta_slow over the original context,
 * a linear ramp between, and get_mscale for the attention factor. Tensors are f32, the range math Python floats.
 */
export function ropeYarn(theta: number, R: number, y: YarnRope): Rotary {
  const f32 = Math.fround;
  const getMscale = (scale: number, mscale = 1) => (scale <= 1 ? 1.0 : 0.1 * mscale * Math.log(scale) + 1.0);
  let attentionScaling = y.attentionFactor;
  if (attentionScaling === undefined) {
    attentionScaling = y.mscale && y.mscaleAllDim ? getMscale(y.factor, y.mscale) / getMscale(y.factor, y.mscaleAllDim) : getMscale(y.factor);
  }
  const findCorrectionDim = (numRotations: number) =>
    (R * Math.log(y.originalMaxPositionEmbeddings / (numRotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = findCorrectionDim(y.betaFast), high = findCorrectionDim(y.betaSlow);
  if (y.truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, R - 1);
  if (low === high) high += 0.001;
  const invFreq = new Float32Array(R / 2);
  for (let i = 0; i < R / 2; i++) {
    const posFreq = f32(theta ** f32((2 * i) / R));
    const extrapolation = f32(1 / posFreq);
    const interpolation = f32(1 / f32(y.factor * posFreq));
    const linear = f32(f32(i - low) / f32(high - low));
    const extrapolationFactor = f32(1 - Math.min(Math.max(linear, 0), 1));
    invFreq[i] = f32(interpolation * f32(1 - extrapolationFactor)) + f32(extrapolation * extrapolationFactor);
  }
  return { invFreq, attentionScaling };
}

/**
 * Partial NeoX RoPE in place on x: [T, heads, D]; rotates the first R dims of each head, pairing i with i+R/2.
 * positions: [T]. The angle p·inv_freq is rounded to f32, as HF computes it.
 */
export function applyRope(x: Float32Array, positions: ArrayLike<number>, heads: number, D: number, R: number, invFreq: Float32Array, attentionScaling = 1) {
  const half = R / 2;
  for (let t = 0; t < positions.length; t++) {
    for (let h = 0; h < heads; h++) {
      const base = (t * heads + h) * D;
      for (let i = 0; i < half; i++) {
        const phi = Math.fround(positions[t] * invFreq[i]);
        const c = Math.fround(Math.cos(phi) * attentionScaling), s = Math.fround(Math.sin(phi) * attentionScaling);
        const a = x[base + i], b = x[base + i + half];
        x[base + i] = a * c - b * s;
        x[base + i + half] = b * c + a * s;
      }
    }
  }
}

/**
 * Causal softmax attention with GQA for T new queries against a cache of Tk keys (the last T of which are
 * the new tokens). q: [T, Hq, D]; keys, values: [Hkv, Tk, D] (cache layout); returns [T, Hq, D].
 * Query t sits at cache position Tk − T + t and sees keys 0..that position.
 */
export function attention(q: Float32Array, keys: Float32Array, values: Float32Array, T: number, Tk: number, Hq: number, Hkv: number, D: number, scale: number): Float32Array {
  const out = new Float32Array(T * Hq * D);
  const group = Hq / Hkv;
  const scores = new Float64Array(Tk);
  for (let t = 0; t < T; t++) {
    const last = Tk - T + t;
    for (let h = 0; h < Hq; h++) {
      const kv = Math.floor(h / group);
      let max = -Infinity;
      for (let s = 0; s <= last; s++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[(t * Hq + h) * D + d] * keys[(kv * Tk + s) * D + d];
        scores[s] = dot * scale;
        max = Math.max(max, scores[s]);
      }
      let sum = 0;
      for (let s = 0; s <= last; s++) sum += scores[s] = Math.exp(scores[s] - max);
      for (let d = 0; d < D; d++) {
        let acc = 0;
        for (let s = 0; s <= last; s++) acc += scores[s] * values[(kv * Tk + s) * D + d];
        out[(t * Hq + h) * D + d] = acc / sum;
      }
    }
  }
  return out;
}

/**
 * Router: softmax over E logits (f32) → top-k by probability (ties: lower index first) → renormalise if asked.
 * logits: [T, E]. Returns idx, w: [T, k].
 */
export function routeTopK(logits: Float32Array, T: number, E: number, k: number, normTopk: boolean) {
  const idx = new Int32Array(T * k), w = new Float32Array(T * k);
  for (let t = 0; t < T; t++) {
    const row = logits.subarray(t * E, (t + 1) * E);
    let max = -Infinity;
    for (const l of row) max = Math.max(max, l);
    const p = Array.from(row, (l) => Math.exp(l - max));
    const sum = p.reduce((a, b) => a + b, 0);
    const order = p.map((_, e) => e).sort((a, b) => p[b] - p[a] || a - b).slice(0, k);
    const topSum = order.reduce((a, e) => a + p[e] / sum, 0);
    order.forEach((e, j) => {
      idx[t * k + j] = e;
      w[t * k + j] = normTopk ? p[e] / sum / topSum : p[e] / sum;
    });
  }
  return { idx, w };
}

/** SwiGLU MLP: down · (silu(gate·x) ⊙ up·x).  x: [T, H]; gate, up: [I, H]; down: [H, I]. */
export function swiglu(x: Float32Array, gate: Float32Array, up: Float32Array, down: Float32Array, T: number, H: number, I: number): Float32Array {
  const g = linear(x, gate, T, H, I), u = linear(x, up, T, H, I);
  for (let i = 0; i < g.length; i++) g[i] = silu(g[i]) * u[i];
  return linear(g, down, T, I, H);
}
