// y (T, N) = x (T, K) · Wᵀ for prefill, W (N, K) in a storage format of quant.wgsl (decode's T <= 4 take gemv.wgsl):
// 64x64 output tiles, k-tiles of 32 (= one quant group), x and dequantised W staged in workgroup memory, 4x4 outputs
// per thread. SWIGLU: x rows are (2K) = [gate | up] and the input is silu(gate)·up (the shared expert's down_proj).
#include "common.wgsl"
#include "quant.wgsl"

override N: u32;        // rows of W (out features)
override K: u32;        // cols of W (in features)
override SWIGLU: bool = false;

struct Params { T: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4f>;       // (T, K) f32, rows packed back to back; SWIGLU: (T, 2K)
@group(0) @binding(2) var<storage, read> wq: array<vec4u>;      // W (N, K) packed as quant.wgsl
@group(0) @binding(3) var<storage, read_write> y: array<f32>;   // (T, N)

fn x_at(i: u32) -> f32 { return x[i >> 2u][i & 3u]; }

// x[base + k .. base + k+3] (k a multiple of 4), zero past K.
fn x_part(base: u32, k: u32) -> vec4f {
  if (K % 4u == 0u && k < K) { return x[(base + k) >> 2u]; }
  var v = vec4f(0.0);
  for (var i = 0u; i < 4u; i++) {
    if (k + i < K) { v[i] = x_at(base + k + i); }
  }
  return v;
}

// The input row t at k .. k+3.
fn x_vec4(t: u32, k: u32) -> vec4f {
  if (SWIGLU) {
    let g = x_part(2u * K * t, k);
    return g / (1.0 + exp(-g)) * x_part(2u * K * t + K, k);
  }
  return x_part(K * t, k);
}

const BM = 64u;   // tokens per tile
const BN = 64u;   // rows of W per tile
const BK = 32u;   // k per tile: one quant group

var<workgroup> xs: array<vec4f, BK * BM / 4u>;   // [k][m / 4]
var<workgroup> ws: array<vec4f, BK * BN / 4u>;   // [k][n / 4], dequantised

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n0 = wg.x * BN;
  let m0 = wg.y * BM;
  // loaders: thread lid fills column (lid % 64) of both tiles, k = 8c .. 8c+7
  let lm = lid % 64u;
  let c = lid / 64u;
  let t = m0 + lm;
  let n = min(n0 + lm, N - 1u);   // rows past N load the last row; their outputs are never stored

  var acc: array<vec4f, 4>;        // acc[i][j]: token m0 + 4·l.y + i, row n0 + 4·l.x + j
  for (var k0 = 0u; k0 < K; k0 += BK) {
    var xa = vec4f(0.0);
    var xb = vec4f(0.0);
    if (t < p.T) {
      xa = x_vec4(t, k0 + 8u * c);
      xb = x_vec4(t, k0 + 8u * c + 4u);
    }
    let we = packed_w8(Packed(0u, N, K), n, k0 / 8u + c);
    for (var i = 0u; i < 4u; i++) {
      xs[(8u * c + i) * 16u + lm / 4u][lm % 4u] = xa[i];
      xs[(8u * c + 4u + i) * 16u + lm / 4u][lm % 4u] = xb[i];
      ws[(8u * c + i) * 16u + lm / 4u][lm % 4u] = we[0][i];
      ws[(8u * c + 4u + i) * 16u + lm / 4u][lm % 4u] = we[1][i];
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
      let a = xs[k * 16u + l.y];
      let b = ws[k * 16u + l.x];
      acc[0] += a.x * b;
      acc[1] += a.y * b;
      acc[2] += a.z * b;
      acc[3] += a.w * b;
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < 4u; i++) {
    let m = m0 + 4u * l.y + i;
    for (var j = 0u; j < 4u; j++) {
      let nn = n0 + 4u * l.x + j;
      if (m < p.T && nn < N) { y[m * N + nn] = acc[i][j]; }
    }
  }
}
