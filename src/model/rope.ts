// Rotary position embedding parameters of the attention layers, as HF's default rope init computes them
// (Qwen3NextRotaryEmbedding): inv_freq[i] = 1 / theta^(2i / R) over the R = head_dim · partial_rotary_factor
// rotated dims, every step in f32 as torch does. The CPU reference (src/reference/ops.ts) has its own copy on
// purpose: each is checked against HF's fixtures, so a bug in one cannot hide in both.

/** (R/2) f32 inverse frequencies for rope_theta `theta` and `R` rotated dims. */
export function ropeInvFreq(theta: number, R: number): Float32Array<ArrayBuffer> {
  return Float32Array.from({ length: R / 2 }, (_, i) => {
    const exponent = Math.fround(Math.fround(2 * i) / R); // torch.arange(0, R, 2).float() / R
    return Math.fround(1 / Math.fround(Math.pow(theta, exponent))); // 1.0 / (base ** exponent), in f32
  });
}
