// The int8 GEMM tile (matmul_int8.wgsl's dense GEMM, moe_int8.wgsl's expert GEMMs): a workgroup of 256 threads
// computes BM rows of quantized activations x BN rows of a q4 weight, TM x TN outputs a thread (rows ty + 16·i,
// columns tx + 16·j), GB quant groups a k-tile. The includer declares `const TM, TN` and the bindings
// `xq4: array<vec4u>` (quantized rows, (rows, G·2) vec4s), `xs: array<vec2f>` ((rows, G) scale and sum) and `wq`
// (quant.wgsl). Per group of 32: Σ_k w·x ≈ s·a·Σ_k q·xq + m·Σx (matmul_int8.wgsl says why).

const BM = 16u * TM;
const BN = 16u * TN;
const GB = 2u;          // quant groups a k-tile (a barrier pair each)
const LO = 0x0F0F0F0Fu;
const NO_ROW = 0xFFFFFFFFu;

var<workgroup> a_s: array<vec4u, GB * 2u * BM>;    // [g][half][r]: half h of tile row r's int8 group
var<workgroup> a_sc: array<vec2f, GB * BM>;        // [g][r]: (scale, Σ x)
var<workgroup> w_s: array<vec4u, GB * 2u * BN>;    // [g][half][c]: half h of tile column c's group as int8 nibbles
var<workgroup> w_sc: array<vec2f, GB * BN>;        // [g][c]: (scale, min)

// a_row: the xq row of tile row lid % BM (NO_ROW: zeros); w_row: the row of W for tile column lid % BN (a valid row
// even past the tile's end: such columns are computed and never stored). K: W's columns (= the rows' width).
fn int8_tile(lid: u32, K: u32, a_row: u32, W: Packed, w_row: u32) -> array<array<f32, TN>, TM> {
  let G = q_groups(K);
  let tx = lid % 16u;
  let ty = lid / 16u;
  var acc = array<array<f32, TN>, TM>();
  for (var g0 = 0u; g0 < G; g0 += GB) {
    // stage: activations (two vec4s and a scale pair a thread), weights (a q4 group or its scale word a thread)
    if (lid < GB * BM) {
      let g = lid / BM;
      let r = lid % BM;
      var lo = vec4u(0u);
      var hi = vec4u(0u);
      var sc = vec2f(0.0);
      if (a_row != NO_ROW && g0 + g < G) {
        lo = xq4[(a_row * G + g0 + g) * 2u];
        hi = xq4[(a_row * G + g0 + g) * 2u + 1u];
        sc = xs[a_row * G + g0 + g];
      }
      a_s[(2u * g) * BM + r] = lo;
      a_s[(2u * g + 1u) * BM + r] = hi;
      a_sc[g * BM + r] = sc;
    }
    if (lid < GB * BN) {
      let g = lid / BN;
      let c = lid % BN;
      var d = vec4u(0u);
      let first = W.base + (w_row * G + g0 + g) * 4u;   // an expert slot may start mid-vec4
      if (g0 + g < G && (first & 3u) == 0u) { d = wq[first >> 2u]; }
      else if (g0 + g < G) { d = vec4u(packed_word(first), packed_word(first + 1u), packed_word(first + 2u), packed_word(first + 3u)); }
      w_s[(2u * g) * BN + c] = vec4u(d.x & LO, (d.x >> 4u) & LO, d.y & LO, (d.y >> 4u) & LO);
      w_s[(2u * g + 1u) * BN + c] = vec4u(d.z & LO, (d.z >> 4u) & LO, d.w & LO, (d.w >> 4u) & LO);
    } else if (lid < 2u * GB * BN) {
      let g = (lid - GB * BN) / BN;
      let c = lid % BN;
      w_sc[g * BN + c] = select(vec2f(0.0), q_scale_min(packed_word(q_scale_word(W, w_row, min(g0 + g, G - 1u)))), g0 + g < G);
    }
    workgroupBarrier();

    for (var g = 0u; g < GB; g++) {
      var d = array<array<i32, TN>, TM>();   // explicitly: a loop-local array is not reliably fresh on SwiftShader
      for (var h = 0u; h < 2u; h++) {
        var b: array<vec4u, TN>;
        for (var j = 0u; j < TN; j++) { b[j] = w_s[(2u * g + h) * BN + tx + 16u * j]; }
        for (var i = 0u; i < TM; i++) {
          let a = a_s[(2u * g + h) * BM + ty + 16u * i];
          for (var j = 0u; j < TN; j++) {
            d[i][j] += dot4I8Packed(a.x, b[j].x) + dot4I8Packed(a.y, b[j].y) + dot4I8Packed(a.z, b[j].z) + dot4I8Packed(a.w, b[j].w);
          }
        }
      }
      for (var i = 0u; i < TM; i++) {
        let as_ = a_sc[g * BM + ty + 16u * i];
        for (var j = 0u; j < TN; j++) {
          let ws_ = w_sc[g * BN + tx + 16u * j];
          acc[i][j] += f32(d[i][j]) * (as_.x * ws_.x) + ws_.y * as_.y;
        }
      }
    }
    workgroupBarrier();
  }
  return acc;
}
