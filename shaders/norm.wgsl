// RMSNorm family for many rows at once (prefill; decode norms inside its GEMVs, gemv.wgsl). One workgroup per row;
// the row's sum of squares through reduce.wgsl.
#include "common.wgsl"
#include "reduce.wgsl"

override D: u32;            // row width
override WG: u32 = 64u;     // threads per row (power of two; norm.ts: more for wide rows)
override TEAM: u32 = 32u;   // reduce.wgsl
override EPS: f32 = 1e-6;

// rows; and for the gated norm where the gate row r = (t, h) sits: z_offset + t*z_stride + h*D, h < heads.
struct Params { rows: u32, z_stride: u32, z_offset: u32, heads: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;        // (rows, D)
@group(0) @binding(2) var<storage, read> w: array<f32>;        // (D)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;  // (rows, D)
@group(0) @binding(4) var<storage, read> z: array<f32>;        // gated norm only: gate rows, see Params

// 1 / rms of a row from each thread's partial sum of squares.
fn inv_rms(ss: f32, lid: u32) -> f32 { return inverseSqrt(workgroup_sum(lid, ss) / f32(D) + EPS); }

fn row_inv_rms(base: u32, lid: u32) -> f32 {
  var ss = 0.0;
  for (var i = lid; i < D; i += WG) { let v = x[base + i]; ss += v * v; }
  return inv_rms(ss, lid);
}

// Qwen3NextRMSNorm: x · rsqrt(mean(x²) + eps) · (1 + w), the weight zero-centred ("1 + w"): input,
// post-attention and final norms.
@compute @workgroup_size(WG)
fn rms_norm(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let row = flat_group(wg);
  if (row >= p.rows) { return; }   // uniform per workgroup: barriers stay in uniform control flow
  let base = row * D;
  let inv = row_inv_rms(base, l.x);
  for (var i = l.x; i < D; i += WG) { y[base + i] = x[base + i] * inv * (1.0 + w[i]); }
}

// Gated RMSNorm of the GDN output (REFERENCE.md §2.1 step 9): y = w · (x·rsqrt(mean(x²)+eps)) · silu(z), plain w.
// x rows are (t, h) value heads; z lives inside the fused projection, so its rows are strided.
@compute @workgroup_size(WG)
fn rms_norm_gated(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let row = flat_group(wg);
  if (row >= p.rows) { return; }
  let base = row * D;
  let zbase = p.z_offset + (row / p.heads) * p.z_stride + (row % p.heads) * D;
  let inv = row_inv_rms(base, l.x);
  for (var i = l.x; i < D; i += WG) { y[base + i] = w[i] * (x[base + i] * inv) * silu(z[zbase + i]); }
}

// Residual add fused with the next zero-centred RMSNorm (one dispatch instead of two, every layer twice):
// h += delta, then y = RMSNorm(h)·(1 + w). Each thread re-reads only the elements it wrote itself.
@group(0) @binding(1) var<storage, read_write> h: array<f32>;   // (rows, D) the residual stream, updated
@group(0) @binding(4) var<storage, read> delta: array<f32>;     // (rows, D) the mixer / MoE output
@compute @workgroup_size(WG)
fn add_rms_norm(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let row = flat_group(wg);
  if (row >= p.rows) { return; }
  let base = row * D;
  var ss = 0.0;
  for (var i = l.x; i < D; i += WG) {
    let v = h[base + i] + delta[base + i];
    h[base + i] = v;
    ss += v * v;
  }
  let inv = inv_rms(ss, l.x);
  for (var i = l.x; i < D; i += WG) { y[base + i] = h[base + i] * inv * (1.0 + w[i]); }
}
