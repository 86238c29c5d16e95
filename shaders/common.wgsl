// Shared helpers: included with `#include "common.wgsl"`, never pasted.

fn silu(x: f32) -> f32 { return x / (1.0 + exp(-x)); }
fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
// PyTorch softplus (beta 1, threshold 20).
fn softplus(x: f32) -> f32 { return select(log(1.0 + exp(x)), x, x > 20.0); }

// WebGPU caps a grid dimension at 65,535 workgroups: src/kernels/grid.ts folds larger grids into (x, y), and a
// kernel recovers the flat workgroup index (returning when it is past the end).
const GRID_FOLD = 65535u;
fn flat_group(wg: vec3u) -> u32 { return wg.x + wg.y * GRID_FOLD; }
