// Token embedding: out[t, :] = W[ids[t], :], W (V, H) in any storage format of quant.wgsl, dequantised. Each
// workgroup takes COLS columns of one token (many workgroups a token: one decode token is not one workgroup's work).
#include "common.wgsl"
#include "quant.wgsl"

override V: u32;        // vocabulary rows
override H: u32;        // hidden size (cols)
override WG: u32 = 64u;
override COLS: u32 = 256u;   // columns a workgroup

struct Params { T: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;         // (T)
@group(0) @binding(2) var<storage, read> wq: array<vec4u>;        // W (V, H) packed as quant.wgsl
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // (T, H)

// An id past the vocabulary gives a zero row.
@compute @workgroup_size(WG)
fn embed(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let blocks = (H + COLS - 1u) / COLS;
  let flat = flat_group(wg);
  let t = flat / blocks;
  if (t >= p.T) { return; }
  let n = ids[t];
  for (var k = (flat % blocks) * COLS + lid; k < min(H, (flat % blocks + 1u) * COLS); k += WG) {
    out[t * H + k] = select(0.0, packed_at(Packed(0u, V, H), min(n, V - 1u), k), n < V);
  }
}
