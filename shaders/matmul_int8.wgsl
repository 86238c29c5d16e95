// y (T, N) = x (T, K) · Wᵀ for prefill on packed int8 dot products (dot4I8Packed) instead of f32 FMAs: the rows of x
// are quantized first (quantize_rows: int8 per group of 32, symmetric, with the group's scale and exact sum), then
// gemm_int8 multiplies them with q4 weights unpacked to int8 nibbles. For a q4 group of 32 (scale s, min m) and the
// activations' group (scale a, sum Σx, int8 values xq):
//   Σ_k w·x = Σ_k (q_k·s + m)·x_k ≈ s·a·Σ_k q_k·xq_k + m·Σx
// so only the q·x part is rounded (the activations' int8 rounding); the min term uses the exact sum.
// Nibble order: word j of a q4 group holds k = 8j .. 8j+7 (quant.wgsl), so `w & 0x0F0F0F0F` is the bytes of
// k = 8j, 8j+2, 8j+4, 8j+6 and `(w >> 4) & 0x0F0F0F0F` those of 8j+1, 8j+3, ...; the quantized rows are packed in
// the same even / odd order: group words [E0, O0, E1, O1, E2, O2, E3, O3].
#include "common.wgsl"
#include "quant.wgsl"

override N: u32;        // rows of W (out features)
override K: u32;        // cols of W (in features)
override SWIGLU: bool = false;

const QG = 32u;         // a quant group: k per scale

struct Params { T: u32 }

@group(0) @binding(0) var<uniform> p: Params;

// ---- quantize_rows: one thread a (token, group) --------------------------------------------------------------

@group(0) @binding(1) var<storage, read> x: array<f32>;                // (T, K) f32; SWIGLU: (T, 2K) = [gate | up]
@group(0) @binding(2) var<storage, read_write> xq: array<u32>;         // (T, G·8) int8 x4, even / odd order
@group(0) @binding(3) var<storage, read_write> xs: array<vec2f>;       // (T, G): (scale, Σ x) of each group

fn x_in(t: u32, k: u32) -> f32 {
  if (k >= K) { return 0.0; }
  if (SWIGLU) { return silu(x[2u * K * t + k]) * x[2u * K * t + K + k]; }
  return x[K * t + k];
}

@compute @workgroup_size(256)
fn quantize_rows(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let G = q_groups(K);
  let i = flat_group(wg) * 256u + lid;
  if (i >= p.T * G) { return; }
  let t = i / G;
  let k0 = (i % G) * QG;
  var v: array<f32, 32>;
  var amax = 0.0;
  var sum = 0.0;
  for (var k = 0u; k < QG; k++) {
    v[k] = x_in(t, k0 + k);
    amax = max(amax, abs(v[k]));
    sum += v[k];
  }
  let inv = select(0.0, 127.0 / amax, amax > 0.0);
  for (var j = 0u; j < 4u; j++) {
    let e = vec4i(round(vec4f(v[8u * j], v[8u * j + 2u], v[8u * j + 4u], v[8u * j + 6u]) * inv));
    let o = vec4i(round(vec4f(v[8u * j + 1u], v[8u * j + 3u], v[8u * j + 5u], v[8u * j + 7u]) * inv));
    xq[i * 8u + 2u * j] = pack4xI8(e);
    xq[i * 8u + 2u * j + 1u] = pack4xI8(o);
  }
  xs[i] = vec2f(amax / 127.0, sum);
}

// ---- gemm_int8: 128 tokens x 64 rows a workgroup (int8_tile.wgsl) --------------------------------------------

@group(0) @binding(4) var<storage, read> xq4: array<vec4u>;             // xq as (T, G·2) vec4s
@group(0) @binding(5) var<storage, read> wq: array<vec4u>;              // W (N, K) q4 (quant.wgsl)
@group(0) @binding(6) var<storage, read_write> y: array<f32>;           // (T, N)

const TM = 8u;          // tokens a thread
const TN = 4u;          // rows a thread
#include "int8_tile.wgsl"

@compute @workgroup_size(256)
fn gemm_int8(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n0 = wg.x * BN;
  let m0 = wg.y * BM;
  let t = m0 + lid % BM;
  // rows past N repeat the last; their outputs are never stored
  let acc = int8_tile(lid, K, select(NO_ROW, t, t < p.T), Packed(0u, N, K), min(n0 + lid % BN, N - 1u));
  for (var i = 0u; i < TM; i++) {
    let m = m0 + lid / 16u + 16u * i;
    for (var j = 0u; j < TN; j++) {
      let n = n0 + lid % 16u + 16u * j;
      if (m < p.T && n < N) { y[m * N + n] = acc[i][j]; }
    }
  }
}
