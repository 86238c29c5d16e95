// Sparse MoE experts (REFERENCE.md §5): SwiGLU over only the experts moe_route.wgsl selected, and the combine
// y[t] = Σ_j w[t,j]·E_{e_j}(x[t]) + sigmoid(logits[t,E])·shared[t], summed in fixed j order (no float atomics).
//   decode  (few tokens): GEMVs per (token, j) pair, grid over (pair, row tile); the down GEMVs do the combine.
//   prefill (many tokens): per-expert tiled GEMMs over the tile list moe_route.wgsl's counting sort made (its
//            length is bounded by T, so every dispatch size is known on the CPU: no read-back), then the combine.
// Routed experts live in stacked slot buffers: slot s of gate_up is a packed (2I, H) weight with rows
// [gate_proj; up_proj], slot s of down a packed (H, I) weight; slot_of[e] maps expert e to its slot.
#include "common.wgsl"
#include "quant.wgsl"

override E: u32 = 1u;            // routed experts
override TOPK: u32 = 1u;         // experts per token (k)
override TM: u32 = 32u;          // list entries (tokens) per GEMM tile: moe.ts passes the value moe_route's scan used
override H: u32 = 1u;            // hidden size
override I: u32 = 1u;            // expert intermediate size
override FORMAT: u32 = 0u;       // 0 f32, 1 f16, 2 q4, 3 q8 (quant.wgsl)
override GU_WORDS: u32 = 1u;     // packed words of one gate_up slot (2I, H)
override DN_WORDS: u32 = 1u;     // packed words of one down slot (H, I)

const WG = 256u;                 // threads of the expert kernels
const FOLD = 65535u;             // grid() folds flat workgroup ids into (x, y)

struct Params { T: u32, max_tiles: u32 }

// Bindings. A number is reused across entry points; `act` and `wt` keep theirs everywhere because the shared
// helpers read them.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> act: array<f32>;  // GEMV/GEMM input rows: x (T, H), h (T·k, I), y (T, k, H)
@group(0) @binding(2) var<storage, read> wt: array<u32>;   // (slots, GU_WORDS | DN_WORDS) packed expert weights

// ---------------------------------------------------------------------------------------------------------
// Packed expert weights: eight consecutive values w[n, 8c .. 8c+7] of the (N, K) weight that starts at word
// `base` of `wt`. Chunk c lies in quantization group c / 4. Columns >= K read 0 for f32/f16 (the next row
// follows); q4/q8 pad every row to whole groups, and their padding meets zero activations.

struct V8 { lo: vec4f, hi: vec4f }

fn f32_at(i: u32, ok: bool) -> f32 {
  if (ok) { return bitcast<f32>(wt[i]); }
  return 0.0;
}

fn f16_at(i: u32, ok: bool) -> vec2f {
  if (ok) { return unpack2x16float(wt[i]); }
  return vec2f(0.0);
}

fn load_w8(base: u32, N: u32, K: u32, n: u32, c: u32) -> V8 {
  let k0 = c * 8u;
  let G = (K + 31u) / 32u;
  let g = c / 4u;
  switch FORMAT {
    case 0u: {
      let r = base + n * K + k0;
      return V8(vec4f(f32_at(r, k0 < K), f32_at(r + 1u, k0 + 1u < K), f32_at(r + 2u, k0 + 2u < K), f32_at(r + 3u, k0 + 3u < K)),
                vec4f(f32_at(r + 4u, k0 + 4u < K), f32_at(r + 5u, k0 + 5u < K), f32_at(r + 6u, k0 + 6u < K), f32_at(r + 7u, k0 + 7u < K)));
    }
    case 1u: {
      let r = base + n * ((K + 1u) / 2u) + k0 / 2u;
      return V8(vec4f(f16_at(r, k0 < K), f16_at(r + 1u, k0 + 2u < K)), vec4f(f16_at(r + 2u, k0 + 4u < K), f16_at(r + 3u, k0 + 6u < K)));
    }
    case 2u: {
      let q = wt[base + (n * G + g) * 4u + c % 4u];
      let sm = q_scale_min(wt[base + N * G * 4u + n * G + g]);
      return V8(q4_lo(q) * sm.x + sm.y, q4_hi(q) * sm.x + sm.y);
    }
    default: {
      let w = base + (n * G + g) * 8u + (c % 4u) * 2u;
      let sm = q_scale_min(wt[base + N * G * 8u + n * G + g]);
      return V8(q8_unpack(wt[w]) * sm.x + sm.y, q8_unpack(wt[w + 1u]) * sm.x + sm.y);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Decode: one workgroup per (pair, row tile). A pair is (token t, choice j) = t·k + j. Its input row is
// staged in workgroup memory (zero-padded to whole groups, one pad word per group so lanes reading different
// groups hit different banks); TEAM lanes share each dot product, each taking whole groups, whose loads are
// independent and issued back to back (a GEMV is bound by memory latency × bytes in flight); a tree sums lanes.

override TEAM: u32 = 8u;         // lanes per dot product (power of two <= 8; the host gives short rows fewer)
override ROWS: u32 = WG / TEAM;  // dot products per workgroup

@group(0) @binding(3) var<storage, read> slot_of: array<u32>;          // (E) expert -> slot

// Decode can run the shared expert as one more pair of each token (where its shape and format are an expert's):
// its weights sit in slot SHARED_SLOT of the slot buffers and its combine weight is sigmoid(logits[t, E]).
override SHARED_SLOT: u32 = 0xffffffffu;                              // none: the shared expert runs on its own
override KK: u32 = TOPK + select(0u, 1u, SHARED_SLOT != 0xffffffffu);  // pairs a token: the routed k (+ the shared one)

// The slot of token t's pair j.
fn pair_slot(t: u32, j: u32) -> u32 {
  if (j < TOPK) { return slot_of[expert_idx[t * TOPK + j]]; }
  return SHARED_SLOT;
}
@group(0) @binding(4) var<storage, read> expert_idx: array<u32>;       // (T, k) router choice per pair
@group(0) @binding(5) var<storage, read_write> res: array<f32>;        // GEMV/GEMM output rows

var<workgroup> xs: array<f32, max((H + 31u) / 32u, (I + 31u) / 32u) * 33u>;
var<workgroup> red: array<f32, WG>;

// The 32 weights of group g of row n (four chunks of eight); q4 reads its scale word once.
fn load_w32(base: u32, N: u32, K: u32, n: u32, g: u32) -> array<V8, 4> {
  if (FORMAT == 2u) {
    let G = (K + 31u) / 32u;
    let q = base + (n * G + g) * 4u;
    let w = vec4u(wt[q], wt[q + 1u], wt[q + 2u], wt[q + 3u]);
    let sm = q_scale_min(wt[base + N * G * 4u + n * G + g]);
    return array<V8, 4>(V8(q4_lo(w.x) * sm.x + sm.y, q4_hi(w.x) * sm.x + sm.y), V8(q4_lo(w.y) * sm.x + sm.y, q4_hi(w.y) * sm.x + sm.y),
                        V8(q4_lo(w.z) * sm.x + sm.y, q4_hi(w.z) * sm.x + sm.y), V8(q4_lo(w.w) * sm.x + sm.y, q4_hi(w.w) * sm.x + sm.y));
  }
  return array<V8, 4>(load_w8(base, N, K, n, 4u * g), load_w8(base, N, K, n, 4u * g + 1u), load_w8(base, N, K, n, 4u * g + 2u), load_w8(base, N, K, n, 4u * g + 3u));
}

// dot of chunk w with xs values 8c .. 8c+7 of group g (padded layout: group g starts at 33 g).
fn dot_xs(w: V8, g: u32, c: u32) -> f32 {
  let k = 33u * g + 8u * c;
  return dot(w.lo, vec4f(xs[k], xs[k + 1u], xs[k + 2u], xs[k + 3u])) + dot(w.hi, vec4f(xs[k + 4u], xs[k + 5u], xs[k + 6u], xs[k + 7u]));
}

// xs <- act[a_base .. a_base+K), zero-padded to whole groups (then a barrier).
fn stage_row(lid: u32, a_base: u32, K: u32) {
  let G = (K + 31u) / 32u;
  for (var i = lid; i < G * 32u; i += WG) {
    var v = 0.0;
    if (i < K) { v = act[a_base + i]; }
    xs[i + i / 32u] = v;
  }
  workgroupBarrier();
}

// This lane's share of dot(w[n, :], xs): the groups g ≡ lane (mod TEAM).
fn lane_dot(lane: u32, K: u32, w_base: u32, N: u32, n: u32, n_ok: bool) -> f32 {
  let G = (K + 31u) / 32u;
  var acc = 0.0;
  if (n_ok) {
    for (var g = lane; g < G; g += TEAM) {
      let w = load_w32(w_base, N, K, n, g);
      acc += dot_xs(w[0], g, 0u) + dot_xs(w[1], g, 1u) + dot_xs(w[2], g, 2u) + dot_xs(w[3], g, 3u);
    }
  }
  return acc;
}

// Sums each team's lanes: the total of team r lands in red[r · TEAM].
fn team_sum(lid: u32, acc: f32) {
  let lane = lid % TEAM;
  red[lid] = acc;
  workgroupBarrier();
  for (var s = TEAM / 2u; s > 0u; s >>= 1u) {
    if (lane < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
}

// h (T, KK, I): h[pair, u] = silu(gate_u · x_t) · (up_u · x_t), pair = t·KK + j. The first half of the teams take
// gate rows, the second half the matching up rows.
@compute @workgroup_size(WG)
fn moe_gate_up_gemv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let units = ROWS / 2u;
  let col_tiles = (I + units - 1u) / units;
  let flat = wg.x + wg.y * FOLD;
  let pair = flat / col_tiles;
  if (pair >= p.T * KK) { return; }
  let u0 = (flat % col_tiles) * units;
  let team = lid / TEAM;
  let unit = u0 + team % units;
  let n = select(unit, I + unit, team >= units);
  stage_row(lid, (pair / KK) * H, H);
  team_sum(lid, lane_dot(lid % TEAM, H, pair_slot(pair / KK, pair % KK) * GU_WORDS, 2u * I, n, unit < I));
  if (lid < units && u0 + lid < I) { res[pair * I + u0 + lid] = silu(red[lid * TEAM]) * red[(lid + units) * TEAM]; }
}

// out (T, H) = Σ_j w[t,j]·(down_{e_j} · h[t,j]) + sigmoid(logits[t,E])·shared[t]: the down GEMVs of a token's k
// experts and the combine in one dispatch (with SHARED_SLOT, the shared expert is pair k and its output is summed
// here too). Each lane sums w_j times its share of each expert's dot product, so one team reduction serves all.
@group(0) @binding(6) var<storage, read> dc_top_w: array<f32>;     // (T, k)
@group(0) @binding(7) var<storage, read> dc_logits: array<f32>;    // (T, E+1): router | shared gate
@group(0) @binding(8) var<storage, read> dc_shared: array<f32>;    // (T, H) shared expert output (unread with SHARED_SLOT)

@compute @workgroup_size(WG)
fn moe_down_combine_gemv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let col_tiles = (H + ROWS - 1u) / ROWS;
  let flat = wg.x + wg.y * FOLD;
  let t = flat / col_tiles;
  if (t >= p.T) { return; }
  let n0 = (flat % col_tiles) * ROWS;
  let n = n0 + lid / TEAM;
  let gate = sigmoid(dc_logits[t * (E + 1u) + E]);
  var acc = 0.0;
  for (var j = 0u; j < KK; j++) {
    stage_row(lid, (t * KK + j) * I, I);
    let w = select(gate, dc_top_w[t * TOPK + min(j, TOPK - 1u)], j < TOPK);
    acc += w * lane_dot(lid % TEAM, I, pair_slot(t, j) * DN_WORDS, H, n, n < H);
    workgroupBarrier();              // every lane is done with xs before the next expert's row is staged
  }
  team_sum(lid, acc);
  if (lid < ROWS && n0 + lid < H) {
    let i = t * H + n0 + lid;
    if (SHARED_SLOT != 0xffffffffu) { res[i] = red[lid * TEAM]; } else { res[i] = red[lid * TEAM] + gate * dc_shared[i]; }
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
    var w = V8(vec4f(0.0), vec4f(0.0));
    if (n_ok) { w = load_w8(w_base, N, K, n, g * 4u + bq); }
    for (var i = 0u; i < 4u; i++) {
      b_tile[(bq * 8u + i) * BS + br] = w.lo[i];
      b_tile[(bq * 8u + 4u + i) * BS + br] = w.hi[i];
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
  let flat = wg.x + wg.y * FOLD;
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
  let flat = wg.x + wg.y * FOLD;
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
  let i = (wg.x + wg.y * FOLD) * WG + lid;
  if (i >= p.T * H) { return; }
  let t = i / H;
  let n = i % H;
  var s = 0.0;
  for (var j = 0u; j < TOPK; j++) { s += top_w[t * TOPK + j] * act[(t * TOPK + j) * H + n]; }
  res[i] = s + sigmoid(logits[t * (E + 1u) + E]) * shared_y[i];
}
