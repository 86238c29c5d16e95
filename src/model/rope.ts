// Rotary position embedding parameters of the attention layers, as HF transformers computes them
// (Qwen3NextRotaryEmbedding and modeling_rope_utils): inverse frequencies over the R = head_dim · partial_rotary_factor
// rotated dims and an attention factor that scales cos and sin (1 without scaling), every step in f32 as torch does.
// The CPU reference (src/reference/ops.ts) has its own copy on purpose: each is checked against HF's fixtures, so a
// bug in one cannot hide in both.
import type { Qwen3NextConfig, YarnRope } from '../config.ts';

const f = Math.fround;

/** (R/2) f32 inverse frequencies for rope_theta `theta` and `R` rotated dims (HF's default rope). */
export function ropeInvFreq(theta: number, R: number): Float32Array<ArrayBuffer> {
  return Float32Array.from({ length: R / 2 }, (_, i) => f(1 / ropeBase(theta, i, R)));
}

/** theta^(2i / R) in f32: torch.arange(0, R, 2).float() / R, then base ** that. */
function ropeBase(theta: number, i: number, R: number): number {
  return f(Math.pow(theta, f(f(2 * i) / R)));
}

export interface RopeParameters {
  invFreq: Float32Array<ArrayBuffer>; // (R/2)
  attentionFactor: number; // multiplies cos and sin (HF's attention_scaling)
}

/** The inverse frequencies and attention factor of a config's rope: default, or YaRN. */
export function ropeParameters(c: Pick<Qwen3NextConfig, 'ropeTheta' | 'rotaryDim' | 'ropeScaling'>): RopeParameters {
  const s = c.ropeScaling;
  return s.type === 'yarn' ? yarn(c.ropeTheta, c.rotaryDim, s) : { invFreq: ropeInvFreq(c.ropeTheta, c.rotaryDim), attentionFactor: 1 };
}

/**
 * HF's `_compute_yarn_parameters`: frequencies that turn fewer than beta_slow times over the original context are
 * interpolated (divided by factor), those that turn more than beta_fast times are kept, a linear ramp between;
 * the attention factor is 0.1 ln(factor) + 1 unless the config gives one.
 */
function yarn(theta: number, R: number, y: YarnRope): RopeParameters {
  const mscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
  const attentionFactor = y.attentionFactor ?? (y.mscale && y.mscaleAllDim ? mscale(y.factor, y.mscale) / mscale(y.factor, y.mscaleAllDim) : mscale(y.factor));
  // the dimension whose frequency turns `rotations` times over the original context, in f64 as Python computes it
  const correctionDim = (rotations: number) => (R * Math.log(y.originalMaxPositionEmbeddings / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = correctionDim(y.betaFast), high = correctionDim(y.betaSlow);
  if (y.truncate) [low, high] = [Math.floor(low), Math.ceil(high)];
  low = Math.max(low, 0);
  high = Math.min(high, R - 1);
  if (low === high) high += 0.001; // HF: prevent a singularity
  const invFreq = Float32Array.from({ length: R / 2 }, (_, i) => {
    const base = ropeBase(theta, i, R);
    const extrapolation = f(1 / base), interpolation = f(1 / f(y.factor * base));
    const ramp = Math.min(1, Math.max(0, f(f(i - low) / f(high - low))));
    const keep = f(1 - ramp); // HF's inv_freq_extrapolation_factor
    return f(f(interpolation * f(1 - keep)) + f(extrapolation * keep));
  });
  return { invFreq, attentionFactor };
}
