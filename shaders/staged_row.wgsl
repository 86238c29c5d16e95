// A decode GEMV's input rows, staged in workgroup memory (gemv.wgsl, moe.wgsl): the prologues build them once per
// workgroup and every team reads them unit by unit. The includer declares `override XS4` (vec4s of xs), WG, EPS and
// the norm weight binding `norm_w`, and includes quant.wgsl (units) and reduce.wgsl.

var<workgroup> xs: array<vec4f, XS4>;

// Where element k of a staged row lives: vec4 j of unit u goes to u·V + (j + u) % V (V = UNIT_WEIGHTS / 4). Lanes
// read consecutive units; without the rotation every lane of a q4 row would read the same four banks (a unit is 128
// bytes), with it a quarter-warp's lanes hit different ones.
fn staged_vec4(k: u32) -> u32 {
  let V = UNIT_WEIGHTS / 4u;
  let u = k / UNIT_WEIGHTS;
  return u * V + ((k % UNIT_WEIGHTS) / 4u + u) % V;
}

// Qwen3NextRMSNorm of the first K values of the row staged at vec4 `base4`: x · rsqrt(mean(x²) + eps) · (1 + norm_w),
// then a barrier. Each thread reads back only the elements it staged itself (k ≡ lid mod WG), so no barrier is
// needed before.
fn rmsnorm_staged(lid: u32, K: u32, base4: u32) {
  var ss = 0.0;
  for (var i = lid; i < K; i += WG) { let v = xs[base4 + staged_vec4(i)][i % 4u]; ss += v * v; }
  let inv = inverseSqrt(workgroup_sum(lid, ss) / f32(K) + EPS);
  for (var i = lid; i < K; i += WG) { xs[base4 + staged_vec4(i)][i % 4u] *= inv * (1.0 + norm_w[i]); }
  workgroupBarrier();
}
