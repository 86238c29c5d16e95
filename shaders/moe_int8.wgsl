// The routed experts' prefill GEMMs (moe.wgsl's moe_gate_up_gemm / moe_down_gemm) on int8 activations: the same
// tile list (moe_route.wgsl's counting sort: up to 32 list entries of one expert a tile), the same outputs, the
// products on packed int8 dot products (int8_tile.wgsl) over rows quantize_rows (matmul_int8.wgsl) made: x (T, H)
// for gate/up, the sorted h (T·k, I) for down. q4 expert weights only.
#include "common.wgsl"
#include "quant.wgsl"

override TOPK: u32 = 1u;         // experts per token (k)
override H: u32 = 1u;            // hidden size
override I: u32 = 1u;            // expert intermediate size
override GU_WORDS: u32 = 1u;     // packed words of one gate_up slot (2I, H)
override DN_WORDS: u32 = 1u;     // packed words of one down slot (H, I)

struct Params { T: u32, max_tiles: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xq4: array<vec4u>;      // quantized rows: x (T, H/32·2) or h (T·k, I/32·2) vec4s
@group(0) @binding(2) var<storage, read> wq: array<vec4u>;       // (slots, GU_WORDS | DN_WORDS) packed expert weights
@group(0) @binding(3) var<storage, read> slot_of: array<u32>;    // (E) expert -> slot
@group(0) @binding(4) var<storage, read> tiles: array<vec4u>;    // (max_tiles): (expert, first list entry, entries, 0)
@group(0) @binding(5) var<storage, read_write> res: array<f32>;  // gate/up: h (T·k, I) sorted; down: y (T·k, H) by pair
@group(0) @binding(6) var<storage, read> sorted: array<u32>;     // (T·k) pair ids grouped by expert
@group(0) @binding(7) var<storage, read> xs: array<vec2f>;       // the quantized rows' (scale, Σ x) per group

const TM = 2u;          // list entries a thread: a tile's 32
const TN = 4u;          // weight rows a thread: 64 a workgroup
#include "int8_tile.wgsl"

// The workgroup's tile of the list, or none (past the tiles in use, or an empty one).
fn list_tile(flat: u32, col_tiles: u32) -> vec4u {
  let ti = flat / col_tiles;
  if (ti >= p.max_tiles) { return vec4u(0u); }
  return tiles[ti];
}

// Sorted h from x: tile columns are 32 gate rows then the 32 matching up rows, so thread tx holds gate and up of
// units tx and tx + 16 and applies silu(gate)·up itself.
@compute @workgroup_size(256)
fn moe_gate_up_gemm_int8(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let col_tiles = (I + 31u) / 32u;
  let flat = flat_group(wg);
  let tile = list_tile(flat, col_tiles);
  if (tile.z == 0u) { return; }
  let u0 = (flat % col_tiles) * 32u;
  let r = lid % BM;
  let c = lid % BN;
  let unit = min(u0 + c % 32u, I - 1u);
  let a_row = select(NO_ROW, sorted[tile.y + r] / TOPK, r < tile.z);
  let acc = int8_tile(lid, H, a_row, Packed(slot_of[tile.x] * GU_WORDS, 2u * I, H), select(unit, I + unit, c >= 32u));
  for (var i = 0u; i < TM; i++) {
    let row = lid / 16u + 16u * i;
    for (var q = 0u; q < 2u; q++) {
      let u = u0 + lid % 16u + 16u * q;
      if (row < tile.z && u < I) { res[(tile.y + row) * I + u] = silu(acc[i][q]) * acc[i][q + 2u]; }
    }
  }
}

// y rows by pair from the sorted h: each entry's row goes back to its pair (token t, choice j) for the combine.
@compute @workgroup_size(256)
fn moe_down_gemm_int8(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let col_tiles = (H + BN - 1u) / BN;
  let flat = flat_group(wg);
  let tile = list_tile(flat, col_tiles);
  if (tile.z == 0u) { return; }
  let n0 = (flat % col_tiles) * BN;
  let r = lid % BM;
  let acc = int8_tile(lid, I, select(NO_ROW, tile.y + r, r < tile.z), Packed(slot_of[tile.x] * DN_WORDS, H, I), min(n0 + lid % BN, H - 1u));
  for (var i = 0u; i < TM; i++) {
    let row = lid / 16u + 16u * i;
    if (row >= tile.z) { continue; }
    let pair = sorted[tile.y + row];
    for (var j = 0u; j < TN; j++) {
      let c = n0 + lid % 16u + 16u * j;
      if (c < H) { res[pair * H + c] = acc[i][j]; }
    }
  }
}
