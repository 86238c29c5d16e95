// Shared helpers: included with `#include "common.wgsl"`, never pasted.

fn silu(x: f32) -> f32 { return x / (1.0 + exp(-x)); }
fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
// PyTorch softplus (beta 1, threshold 20).
fn softplus(x: f32) -> f32 { return select(log(1.0 + exp(x)), x, x > 20.0); }
