// Token embedding: out[t, :] = W[ids[t], :], W (V, H) in any storage format of quant.wgsl, dequantised.
#include "quant.wgsl"

override FORMAT: u32;   // 0 f32, 1 f16, 2 q4, 3 q8
override V: u32;        // vocabulary rows
override H: u32;        // hidden size (cols)
override WG: u32 = 256u;

override G: u32 = (H + 31u) / 32u;   // quant groups per row

struct Params { T: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;         // (T)
@group(0) @binding(2) var<storage, read> table: array<u32>;       // W (V, H) packed as quant.wgsl
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // (T, H)

// W[n, k] as the kernels see it: f32(q)·scale + min for q4/q8.
fn table_at(n: u32, k: u32) -> f32 {
  switch FORMAT {
    case 0u: { return bitcast<f32>(table[n * H + k]); }
    case 1u: { return unpack2x16float(table[n * ((H + 1u) / 2u) + k / 2u])[k & 1u]; }
    case 2u: {
      let g = n * G + k / 32u;
      let sm = q_scale_min(table[V * G * 4u + g]);
      let q = (table[g * 4u + (k % 32u) / 8u] >> (4u * (k % 8u))) & 15u;
      return f32(q) * sm.x + sm.y;
    }
    default: {
      let g = n * G + k / 32u;
      let sm = q_scale_min(table[V * G * 8u + g]);
      let q = (table[g * 8u + (k % 32u) / 4u] >> (8u * (k % 4u))) & 255u;
      return f32(q) * sm.x + sm.y;
    }
  }
}

// One workgroup per token; an id past the vocabulary gives a zero row.
@compute @workgroup_size(WG)
fn embed(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = wg.x + wg.y * 65535u;
  if (t >= p.T) { return; }
  let n = ids[t];
  for (var k = lid; k < H; k += WG) {
    out[t * H + k] = select(0.0, table_at(min(n, V - 1u), k), n < V);
  }
}
