// Sparse MoE experts (REFERENCE.md §5): SwiGLU over only the experts the router selected, and the combine
// y[t] = Σ_j w[t,j]·E_{e_j}(x[t]) + sigmoid(logits[t,E])·shared[t], summed in fixed j order (no float atomics).
//   decode  (few tokens): GEMVs (gemv.wgsl's lanes and units) over all of a token's pairs; the down GEMVs do the
//           combine. A token can route itself (topk.wgsl) and norm its input in the gate/up GEMV's prologue.
//   prefill (many tokens): per-expert tiled GEMMs over the tile list moe_route.wgsl's counting sort made (its
//           length is bounded by T, so every dispatch size is known on the CPU: no read-back), then the combine.
// Routed experts live in stacked slot buffers: slot s of gate_up is a packed (2I, H) weight with rows
// [gate_proj; up_proj], slot s of down a packed (H, I) weight; slot_of[e] maps expert e to its slot.
#include "common.wgsl"
#include "quant.wgsl"
#include "reduce.wgsl"
#include "staged_row.wgsl"

override E: u32 = 1u;            // routed experts
override TOPK: u32 = 1u;         // experts per token (k)
override NORM_TOPK: bool = true; // renormalise the k probabilities (topk.wgsl)
override TM: u32 = 32u;          // list entries (tokens) per GEMM tile: moe.ts passes the value moe_route's scan used
override H: u32 = 1u;            // hidden size
override I: u32 = 1u;            // expert intermediate size
override GU_WORDS: u32 = 1u;     // packed words of one gate_up slot (2I, H)
override DN_WORDS: u32 = 1u;     // packed words of one down slot (H, I)
override WG: u32 = 256u;         // threads of the expert kernels
override TEAM: u32 = 32u;        // decode GEMVs: lanes a row (reduce.wgsl)
override EPS: f32 = 1e-6;        // gate/up prologue: post_attention_layernorm's eps

struct Params { T: u32, max_tiles: u32 }

// Bindings. A number is reused across entry points; `act` and `wq` keep theirs everywhere because the shared
// helpers read them.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> act: array<f32>;  // input rows: x (T, H) (the residual a_l when fused), h (T·k, I), y (T, k, H)
@group(0) @binding(2) var<storage, read> wq: array<vec4u>; // (slots, GU_WORDS | DN_WORDS) packed expert weights

// ---------------------------------------------------------------------------------------------------------
// Decode. Pair j of token t is routed choice j (j < TOPK) or, with SHARED_SLOT, the shared expert (j = TOPK, its
// weights in that slot, its combine weight sigmoid(logits[t, E])). Every workgroup takes one token and a tile of
// rows, and loops over the token's PAIRS pairs, so each lane has PAIRS · rows units in flight.

@group(0) @binding(3) var<storage, read> slot_of: array<u32>;          // (E) expert -> slot
override SHARED_SLOT: u32 = 0xffffffffu;                              // none: the shared expert runs on its own
override PAIRS: u32 = TOPK + select(0u, 1u, SHARED_SLOT != 0xffffffffu);  // pairs a token: the routed k (+ the shared one)
override TEAMS: u32 = WG / TEAM;
const CHUNK = 11u;                                                    // down: pairs a lane keeps in flight (k = 10 + shared)
const GU_CHUNK = 4u;                                                  // gate/up: pairs a lane keeps in flight (2 rows each)
override PAIR_GROUPS: u32 = 1u;                                       // teams a gate/up unit or down row, each over a group of its pairs
override GROUP_PAIRS: u32 = (PAIRS + PAIR_GROUPS - 1u) / PAIR_GROUPS;
override TILE_N: u32 = TEAMS / PAIR_GROUPS;                           // gate/up units or down rows a workgroup
override XS4: u32 = max((H + 31u) / 32u, (I + 31u) / 32u * min(PAIRS, CHUNK)) * 8u;  // staged rows in vec4s, whole groups

var<workgroup> pair_slots: array<u32, PAIRS>;     // the slot of each of the token's pairs
var<workgroup> pair_w: array<f32, PAIRS>;         // down: each pair's combine weight

// Unit u (quant.wgsl) of row n of the (N, K) weight in `slot`, and its (scale, min).
fn expert_unit(slot: u32, words: u32, N: u32, K: u32, n: u32, u: u32, wd: ptr<function, vec4u>, sm: ptr<function, vec2f>) {
  let w = Packed(slot * words, N, K);
  *wd = unit_data(w, n, u);
  *sm = unit_scale_min(w, n, u);
}

// x over unit u's columns, from xs at vec4 `base4` (a row staged there), and its sum.
fn staged_unit(base4: u32, u: u32, xc: ptr<function, array<vec4f, 8>>) -> f32 {
  var sx = 0.0;
  for (var j = 0u; j < UNIT_WEIGHTS / 4u; j++) {
    let v = xs[base4 + staged_vec4(u * UNIT_WEIGHTS + 4u * j)];
    xc[j] = v;
    sx += dot(v, vec4f(1.0));
  }
  return sx;
}

// xs[base4 ..] <- act[a_base .. a_base + K), zero-padded to whole groups (no barrier).
fn stage_row(lid: u32, base4: u32, a_base: u32, K: u32) {
  for (var i = lid; i < (K + 31u) / 32u * 32u; i += WG) {
    var v = 0.0;
    if (i < K) { v = act[a_base + i]; }
    xs[base4 + staged_vec4(i)][i % 4u] = v;
  }
}

// gate/up of a tile of units for every pair of token t into h (T·PAIRS, I): h[pair, u] = silu(gate_u · x)·(up_u · x).
// A unit's gate row and up row are taken by PAIR_GROUPS teams, team g of the unit over pairs g·GROUP_PAIRS, ...:
// more threads on the same loads, one prologue a workgroup. Each lane keeps GU_CHUNK pairs in flight (more would
// spill the loaded units out of registers); every team runs the same rounds and reductions (uniform control flow).
fn gate_up_tile(t: u32, tile: u32, lid: u32) {
  let lane = lid % TEAM;
  let team = lid / TEAM;
  let unit = tile * TILE_N + team % TILE_N;
  let n = min(unit, I - 1u);
  let units = row_units(H);
  let first = min(PAIRS, team / TILE_N * GROUP_PAIRS);
  let end = min(PAIRS, first + GROUP_PAIRS);
  for (var c = 0u; c < GROUP_PAIRS; c += GU_CHUNK) {
    let j0 = min(end, first + c);
    let nj = min(GU_CHUNK, end - j0);
    var acc: array<f32, 2 * GU_CHUNK>;   // [pair·2 + (0 gate | 1 up)]
    for (var i = 0u; i < 2u * GU_CHUNK; i++) { acc[i] = 0.0; }   // explicitly: a loop-local array is not reliably fresh on SwiftShader
    for (var u = lane; u < units; u += TEAM) {
      var wd: array<vec4u, 2 * GU_CHUNK>;
      var sm: array<vec2f, 2 * GU_CHUNK>;
      for (var j = 0u; j < nj; j++) {
        expert_unit(pair_slots[j0 + j], GU_WORDS, 2u * I, H, n, u, &wd[2u * j], &sm[2u * j]);
        expert_unit(pair_slots[j0 + j], GU_WORDS, 2u * I, H, I + n, u, &wd[2u * j + 1u], &sm[2u * j + 1u]);
      }
      var xc: array<vec4f, 8>;
      let sx = staged_unit(0u, u, &xc);
      for (var i = 0u; i < 2u * nj; i++) { acc[i] += unit_dot(wd[i], sm[i], &xc, sx); }
    }
    for (var i = 0u; i < 2u * GU_CHUNK; i++) { acc[i] = team_sum(lid, acc[i]); }
    if (lane == 0u && unit < I) {
      for (var j = 0u; j < nj; j++) { res[(t * PAIRS + j0 + j) * I + unit] = silu(acc[2u * j]) * acc[2u * j + 1u]; }
    }
  }
}

@group(0) @binding(4) var<storage, read> expert_idx: array<u32>;       // (T, k) router choice per pair
@group(0) @binding(5) var<storage, read_write> res: array<f32>;        // GEMV/GEMM output rows

// The slots of token t's pairs, from the routing in expert_idx (then a barrier).
fn load_pair_slots(lid: u32, t: u32) {
  if (lid < PAIRS) { pair_slots[lid] = select(SHARED_SLOT, slot_of[expert_idx[t * TOPK + min(lid, TOPK - 1u)]], lid < TOPK); }
}

// The gate/up entries' workgroup: (token t, tile of TILE_N units); t >= p.T past the last token.
fn gate_up_group(wg: vec3u) -> vec2u {
  let tiles = (I + TILE_N - 1u) / TILE_N;
  let flat = flat_group(wg);
  return vec2u(flat / tiles, flat % tiles);
}

// Token t's pair slots from expert_idx and its input row staged (no barrier).
fn stage_routed_token(lid: u32, t: u32) {
  load_pair_slots(lid, t);
  stage_row(lid, 0u, t * H, H);
}

// h (T·PAIRS, I) from x (T, H) routed by expert_idx.
@compute @workgroup_size(WG)
fn moe_gate_up_gemv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = gate_up_group(wg);
  if (g.x >= p.T) { return; }
  stage_routed_token(lid, g.x);
  workgroupBarrier();
  gate_up_tile(g.x, g.y, lid);
}

// ---- tokens that norm their own input (moe_gate_up_gemv_normed), and route themselves too (..._fused) ------------
// x = Qwen3NextRMSNorm(a)·(1 + norm_w) of the residual a (post_attention_layernorm); _fused takes the top-k from the
// router logits (topk.wgsl) and the token's first workgroup stores idx and w for the down GEMVs (and taps); _normed
// reads the routing from expert_idx (a streaming step routed the token before it made the experts resident).
// Workgroup = (token, tile of TILE_N units), as moe_gate_up_gemv.

@group(0) @binding(6) var<storage, read> norm_w: array<f32>;             // (H) post_attention_layernorm
@group(0) @binding(7) var<storage, read> router_logits: array<f32>;      // (T, E+1): router | shared gate
@group(0) @binding(8) var<storage, read_write> idx_out: array<u32>;      // (T, k)
@group(0) @binding(9) var<storage, read_write> w_out: array<f32>;        // (T, k)

#include "topk.wgsl"

@compute @workgroup_size(WG)
fn moe_gate_up_gemv_fused(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = gate_up_group(wg);
  let t = g.x;
  if (t >= p.T) { return; }
  route_topk(lid, t * (E + 1u));
  if (g.y == 0u && lid < TOPK) { idx_out[t * TOPK + lid] = topk_idx[lid]; w_out[t * TOPK + lid] = topk_w[lid]; }
  if (lid < PAIRS) { pair_slots[lid] = select(SHARED_SLOT, slot_of[topk_idx[min(lid, TOPK - 1u)]], lid < TOPK); }
  stage_row(lid, 0u, t * H, H);
  rmsnorm_staged(lid, H, 0u);
  gate_up_tile(t, g.y, lid);
}

@compute @workgroup_size(WG)
fn moe_gate_up_gemv_normed(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let g = gate_up_group(wg);
  if (g.x >= p.T) { return; }
  stage_routed_token(lid, g.x);
  rmsnorm_staged(lid, H, 0u);
  gate_up_tile(g.x, g.y, lid);
}

// ---- moe_down_combine_gemv --------------------------------------------------------------------------------------
// out (T, H) = Σ_j w[t,j]·(down_{e_j} · h[t,j]) + sigmoid(logits[t,E])·shared[t]: the down GEMVs of a token's pairs
// and the combine in one dispatch. Each lane sums w_j times its share of each pair's dot product, so one team
// reduction serves all of its pairs; with PAIR_GROUPS > 1 a row's pairs are split over teams (as in the gate/up) and
// their sums added through workgroup memory. Workgroup = (token, tile of TILE_N output rows).

@group(0) @binding(6) var<storage, read> dc_top_w: array<f32>;     // (T, k)
@group(0) @binding(7) var<storage, read> dc_logits: array<f32>;    // (T, E+1): router | shared gate
@group(0) @binding(8) var<storage, read> dc_shared: array<f32>;    // (T, H) shared expert output (unread with SHARED_SLOT)

var<workgroup> dn_part: array<f32, TEAMS>;   // each team's sum, PAIR_GROUPS > 1

@compute @workgroup_size(WG)
fn moe_down_combine_gemv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tiles = (H + TILE_N - 1u) / TILE_N;
  let flat = flat_group(wg);
  let t = flat / tiles;
  if (t >= p.T) { return; }
  let gate = sigmoid(dc_logits[t * (E + 1u) + E]);
  load_pair_slots(lid, t);
  if (lid < PAIRS) { pair_w[lid] = select(gate, dc_top_w[t * TOPK + min(lid, TOPK - 1u)], lid < TOPK); }
  let rows4 = (I + 31u) / 32u * 8u;   // one staged h row in vec4s
  let lane = lid % TEAM;
  let team = lid / TEAM;
  let n = (flat % tiles) * TILE_N + team % TILE_N;
  let first = min(PAIRS, team / TILE_N * GROUP_PAIRS);   // this team's pairs: first .. end - 1
  let end = min(PAIRS, first + GROUP_PAIRS);
  let units = row_units(I);
  var acc = 0.0;
  for (var j0 = 0u; j0 < PAIRS; j0 += CHUNK) {
    let nj = min(CHUNK, PAIRS - j0);
    workgroupBarrier();   // the previous chunk's rows are read: restage
    for (var j = 0u; j < nj; j++) { stage_row(lid, j * rows4, (t * PAIRS + j0 + j) * I, I); }
    workgroupBarrier();
    let js = min(nj, max(first, j0) - j0);   // the chunk's entries of this team's pairs: js .. je - 1
    let je = max(js, min(nj, end - min(end, j0)));
    for (var u = lane; u < units; u += TEAM) {
      var wd: array<vec4u, CHUNK>;
      var sm: array<vec2f, CHUNK>;
      for (var j = js; j < je; j++) { expert_unit(pair_slots[j0 + j], DN_WORDS, H, I, min(n, H - 1u), u, &wd[j], &sm[j]); }
      for (var j = js; j < je; j++) {
        var xc: array<vec4f, 8>;
        let sx = staged_unit(j * rows4, u, &xc);
        acc += pair_w[j0 + j] * unit_dot(wd[j], sm[j], &xc, sx);
      }
    }
  }
  acc = team_sum(lid, acc);
  if (PAIR_GROUPS > 1u) {
    if (lane == 0u) { dn_part[team] = acc; }
    workgroupBarrier();
    acc = 0.0;
    for (var g = 0u; g < PAIR_GROUPS; g++) { acc += dn_part[g * TILE_N + team % TILE_N]; }
  }
  if (lane == 0u && team < TILE_N && n < H) {
    let i = t * H + n;
    if (SHARED_SLOT != 0xffffffffu) { res[i] = acc; } else { res[i] = acc + gate * dc_shared[i]; }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Prefill GEMMs: one workgroup per (tile, column tile). A tile is up to TM list entries of one expert; empty
// tiles (past the real count) return at once. Thread (ty, tx) = (lid / 16, lid % 16) accumulates entries
// ty, ty + 16 against weight rows tx + 16 r (r = 0..3), over K in chunks of one quantization group.

const TN = 64u;          // weight rows per tile
const KC = 32u;          // K per step
const AS = KC + 1u;      // padded strides: stores and loads hit distinct banks
const BS = TN + 1u;

@group(0) @binding(4) var<storage, read> tiles: array<vec4u>;       // (max_tiles)
@group(0) @binding(6) var<storage, read> sorted: array<u32>;        // (T·k) pair ids grouped by expert

var<workgroup> a_tile: array<f32, TM * AS>;   // [TM][KC] input rows
var<workgroup> b_tile: array<f32, KC * BS>;   // [KC][TN] dequantized weight rows, transposed

// a_base/a_ok: input row lid / 8 of the tile (this thread loads 4 of its values per step);
// n/n_ok: weight row lid / 4 of the tile (this thread loads 8 of its values per step).
fn gemm_tile(lid: u32, K: u32, a_base: u32, a_ok: bool, w_base: u32, N: u32, n: u32, n_ok: bool) -> array<f32, 8> {
  var acc: array<f32, 8>;
  let ar = lid / 8u;
  let ac = (lid % 8u) * 4u;
  let br = lid / 4u;
  let bq = lid % 4u;
  let tx = lid % 16u;
  let ty = lid / 16u;
  for (var g = 0u; g < (K + 31u) / 32u; g++) {
    for (var i = 0u; i < 4u; i++) {
      let k = g * KC + ac + i;
      var v = 0.0;
      if (a_ok && k < K) { v = act[a_base + k]; }
      a_tile[ar * AS + ac + i] = v;
    }
    var w = array<vec4f, 2>(vec4f(0.0), vec4f(0.0));
    if (n_ok) { w = packed_w8(Packed(w_base, N, K), n, g * 4u + bq); }
    for (var i = 0u; i < 4u; i++) {
      b_tile[(bq * 8u + i) * BS + br] = w[0][i];
      b_tile[(bq * 8u + 4u + i) * BS + br] = w[1][i];
    }
    workgroupBarrier();
    for (var kk = 0u; kk < KC; kk++) {
      let a0 = a_tile[ty * AS + kk];
      let a1 = a_tile[(ty + 16u) * AS + kk];
      for (var r = 0u; r < 4u; r++) {
        let bv = b_tile[kk * BS + tx + 16u * r];
        acc[r] += a0 * bv;
        acc[4u + r] += a1 * bv;
      }
    }
    workgroupBarrier();
  }
  return acc;
}

// Sorted h (T·k, I) from x (T, H): tile columns are 32 gate rows then the 32 matching up rows, so thread tx
// holds gate and up of units tx and tx + 16 and applies silu(gate)·up itself.
@compute @workgroup_size(WG)
fn moe_gate_up_gemm(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let col_tiles = (I + 31u) / 32u;
  let flat = flat_group(wg);
  let ti = flat / col_tiles;
  if (ti >= p.max_tiles) { return; }
  let tile = tiles[ti];
  if (tile.z == 0u) { return; }
  let u0 = (flat % col_tiles) * 32u;
  let ar = lid / 8u;
  var a_base = 0u;
  if (ar < tile.z) { a_base = (sorted[tile.y + ar] / TOPK) * H; }
  let c = lid / 4u;
  let unit = u0 + c % 32u;
  let acc = gemm_tile(lid, H, a_base, ar < tile.z, slot_of[tile.x] * GU_WORDS, 2u * I, select(unit, I + unit, c >= 32u), unit < I);
  let tx = lid % 16u;
  let ty = lid / 16u;
  for (var m = 0u; m < 2u; m++) {
    let row = ty + 16u * m;
    for (var q = 0u; q < 2u; q++) {
      let u = u0 + tx + 16u * q;
      if (row < tile.z && u < I) { res[(tile.y + row) * I + u] = silu(acc[4u * m + q]) * acc[4u * m + q + 2u]; }
    }
  }
}

// y (T, k, H) from sorted h: each entry's row goes back to its pair.
@compute @workgroup_size(WG)
fn moe_down_gemm(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let col_tiles = (H + TN - 1u) / TN;
  let flat = flat_group(wg);
  let ti = flat / col_tiles;
  if (ti >= p.max_tiles) { return; }
  let tile = tiles[ti];
  if (tile.z == 0u) { return; }
  let n0 = (flat % col_tiles) * TN;
  let ar = lid / 8u;
  let n = n0 + lid / 4u;
  let acc = gemm_tile(lid, I, (tile.y + ar) * I, ar < tile.z, slot_of[tile.x] * DN_WORDS, H, n, n < H);
  let tx = lid % 16u;
  let ty = lid / 16u;
  for (var m = 0u; m < 2u; m++) {
    let row = ty + 16u * m;
    if (row >= tile.z) { continue; }
    let pair = sorted[tile.y + row];
    for (var r = 0u; r < 4u; r++) {
      let c = n0 + tx + 16u * r;
      if (c < H) { res[pair * H + c] = acc[4u * m + r]; }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Combine (both paths): out[t] = Σ_{j=0..k-1} w[t,j]·y[t,j] + sigmoid(logits[t,E])·shared[t]; the shared
// expert is added last, as in HF.

@group(0) @binding(2) var<storage, read> top_w: array<f32>;    // (T, k)
@group(0) @binding(3) var<storage, read> logits: array<f32>;   // (T, E+1): router | shared gate
@group(0) @binding(4) var<storage, read> shared_y: array<f32>; // (T, H) shared expert output

@compute @workgroup_size(WG)
fn moe_combine(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flat_group(wg) * WG + lid;
  if (i >= p.T * H) { return; }
  let t = i / H;
  let n = i % H;
  var s = 0.0;
  for (var j = 0u; j < TOPK; j++) { s += top_w[t * TOPK + j] * act[(t * TOPK + j) * H + n]; }
  res[i] = s + sigmoid(logits[t * (E + 1u) + E]) * shared_y[i];
}
