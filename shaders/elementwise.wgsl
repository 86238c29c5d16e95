// Small elementwise ops between the big kernels.
#include "common.wgsl"

struct Params { n: u32, cols: u32, in_stride: u32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;        // add: (n); silu_mul: (rows, in_stride) = [gate (cols) | up (cols) | ...]
@group(0) @binding(2) var<storage, read_write> y: array<f32>;  // add: (n) y += a; silu_mul: (rows, cols)

fn flat(gid: vec3u, nwg: vec3u) -> u32 { return gid.x + gid.y * nwg.x * 256u; }

// y += a: the residual adds.
@compute @workgroup_size(256)
fn add_inplace(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i < p.n) { y[i] += a[i]; }
}

// SwiGLU activation of a fused [gate | up] projection: y[r, c] = silu(a[r, c]) * a[r, cols + c].
@compute @workgroup_size(256)
fn silu_mul(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = flat(gid, nwg);
  if (i >= p.n) { return; }
  let r = i / p.cols;
  let c = i % p.cols;
  y[i] = silu(a[r * p.in_stride + c]) * a[r * p.in_stride + p.cols + c];
}
