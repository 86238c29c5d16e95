// Next-token choice on the GPU over the whole vocabulary, without reading logits back.
//   argmax: per-block winners, then one workgroup over the blocks (ties -> lowest index, like torch.argmax).
//   sample: HF's processors in order: repetition penalty, temperature, top-k, top-p, then a draw.
//     reset -> mark (penalised ids) -> prepare (s = penalised logits / temperature, max)
//     -> top-k: 4 radix rounds (radix_hist + radix_select) finding the k-th largest value
//     -> top-p: 4 radix rounds over the top-k survivors, weighting each value by exp(s - max)
//     -> block_mass + pick: the kept token whose cumulative mass (in id order) first passes random·total.
// Values compare as order-preserving u32 keys; masses are 64-bit fixed point (u32 hi, lo; 38 fractional
// bits) so every sum is exact whatever the order of the atomics, and the result is deterministic.

#include "common.wgsl"

override RADIX_SHIFT: u32 = 0u;         // radix rounds: the digit's position (24, 16, 8, 0)
override TOP_P_ROUND: bool = false;     // radix rounds: top-p (mass) rather than top-k (count)

const WG = 256u;
const BLOCK = 1024u;      // elements per workgroup in block passes: 4 per thread
const MAX_BLOCKS = 512u;  // V <= 524288

struct Params {
  V: u32,
  blocks: u32,       // ceil(V / BLOCK)
  top_k: u32,        // 0: off
  n_prev: u32,       // repetition penalty ids
  temperature: f32,
  top_p: f32,
  random: f32,       // uniform [0, 1) draw
  penalty: f32,      // repetition penalty (1: off)
}

struct State {
  max_key: atomic<u32>,
  prefix: u32,       // radix: digits chosen so far
  mask: u32,         // radix: bits of the chosen digits
  rank: u32,         // top-k: rank still to find inside the current prefix
  tau: u32,          // keep keys >= tau (0 keeps everything)
  above_hi: u32,     // top-p: mass of survivors above the current prefix
  above_lo: u32,
  budget_hi: u32,    // top-p: top_p · total survivor mass
  budget_lo: u32,
  cnt: array<atomic<u32>, 256>,     // radix histogram: count,
  mass_hi: array<atomic<u32>, 256>, // and mass
  mass_lo: array<atomic<u32>, 256>,
  block_hi: array<u32, MAX_BLOCKS>, // block_mass: kept mass per block; argmax: winner per block (block_lo)
  block_lo: array<u32, MAX_BLOCKS>,
  penalised: array<atomic<u32>>,    // (ceil(V / 32)) bit set of ids that get the repetition penalty
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> state: State;
@group(0) @binding(2) var<storage, read_write> s: array<f32>;      // (V) sampler: processed logits
@group(0) @binding(2) var<storage, read> vals: array<f32>;         // (V) argmax input
@group(0) @binding(2) var<storage, read> prev_ids: array<u32>;     // (n_prev) mark: earlier token ids
@group(0) @binding(3) var<storage, read> logits: array<f32>;       // (V) prepare: raw logits
@group(0) @binding(3) var<storage, read_write> token: array<u32>;  // (1) the chosen id

// ---- order keys and 64-bit fixed point --------------------------------------------------------------------

// A u32 that orders like the float (-0 just below +0).
fn f32_key(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
fn key_f32(k: u32) -> f32 { return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u)); }

// m >= 0 as (hi, lo) = m·2^6, m·2^38 mod 2^32; the fraction below 2^-38 is dropped.
fn to_fixed(m: f32) -> vec2u {
  let x = m * 64.0;
  let h = floor(x);
  return vec2u(u32(h), u32((x - h) * 4294967296.0));
}
fn fixed_f32(a: vec2u) -> f32 { return f32(a.x) / 64.0 + f32(a.y) * exp2(-38.0); }
fn add64(a: vec2u, b: vec2u) -> vec2u {
  let lo = a.y + b.y;
  return vec2u(a.x + b.x + select(0u, 1u, lo < a.y), lo);
}
fn sub64(a: vec2u, b: vec2u) -> vec2u { return vec2u(a.x - b.x - select(0u, 1u, a.y < b.y), a.y - b.y); }
fn lt64(a: vec2u, b: vec2u) -> bool { return a.x < b.x || (a.x == b.x && a.y < b.y); }

fn max_value() -> f32 { return key_f32(atomicLoad(&state.max_key)); }

// ---- argmax -----------------------------------------------------------------------------------------------

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

const NONE = 0xffffffffu;

// Whether candidate (v, i) beats (bv, bi): the larger value, the lower index on ties; NONE never wins.
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  return i != NONE && (bi == NONE || v > bv || (v == bv && i < bi));
}

fn reduce_best(lid: u32) {
  for (var half = WG / 2u; half > 0u; half >>= 1u) {
    if (lid < half && better(best_v[lid + half], best_i[lid + half], best_v[lid], best_i[lid])) {
      best_v[lid] = best_v[lid + half];
      best_i[lid] = best_i[lid + half];
    }
    workgroupBarrier();
  }
}

@compute @workgroup_size(WG)
fn argmax_blocks(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  var v = 0.0;
  var bi = NONE;
  for (var j = 0u; j < BLOCK / WG; j++) {
    let i = wg.x * BLOCK + j * WG + lid;
    if (i < p.V && better(vals[i], i, v, bi)) { v = vals[i]; bi = i; }
  }
  best_v[lid] = v;
  best_i[lid] = bi;
  workgroupBarrier();
  reduce_best(lid);
  if (lid == 0u) { state.block_lo[wg.x] = best_i[0]; }
}

@compute @workgroup_size(WG)
fn argmax_final(@builtin(local_invocation_index) lid: u32) {
  var v = 0.0;
  var bi = NONE;
  for (var b = lid; b < p.blocks; b += WG) {
    let i = state.block_lo[b];
    if (better(vals[i], i, v, bi)) { v = vals[i]; bi = i; }
  }
  best_v[lid] = v;
  best_i[lid] = bi;
  workgroupBarrier();
  reduce_best(lid);
  if (lid == 0u) { token[0] = best_i[0]; }
}

// ---- sampler: processors ----------------------------------------------------------------------------------

@compute @workgroup_size(WG)
fn reset(@builtin(local_invocation_index) lid: u32) {
  if (lid == 0u) {
    atomicStore(&state.max_key, 0u);
    state.prefix = 0u;
    state.mask = 0u;
    state.tau = 0u;
  }
  atomicStore(&state.cnt[lid], 0u);
  atomicStore(&state.mass_hi[lid], 0u);
  atomicStore(&state.mass_lo[lid], 0u);
  for (var i = lid; i < (p.V + 31u) / 32u; i += WG) { atomicStore(&state.penalised[i], 0u); }
}

@compute @workgroup_size(WG)
fn mark(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let j = (flat_group(wg)) * WG + lid;
  if (j < p.n_prev && prev_ids[j] < p.V) {
    let id = prev_ids[j];
    atomicOr(&state.penalised[id / 32u], 1u << (id % 32u));
  }
}

var<workgroup> wg_max: atomic<u32>;

// s = logits with HF's repetition penalty (positive divided, negative multiplied), then / temperature.
@compute @workgroup_size(WG)
fn prepare(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  if (lid == 0u) { atomicStore(&wg_max, 0u); }
  workgroupBarrier();
  let i = (flat_group(wg)) * WG + lid;
  if (i < p.V) {
    var l = logits[i];
    if (((atomicLoad(&state.penalised[i / 32u]) >> (i % 32u)) & 1u) != 0u) {
      l = select(l / p.penalty, l * p.penalty, l < 0.0);
    }
    let v = l / p.temperature;
    s[i] = v;
    atomicMax(&wg_max, f32_key(v));
  }
  workgroupBarrier();
  if (lid == 0u) { atomicMax(&state.max_key, atomicLoad(&wg_max)); }
}

// ---- sampler: radix select of the top-k and top-p thresholds ----------------------------------------------

var<workgroup> h_cnt: array<atomic<u32>, 256>;
var<workgroup> h_hi: array<atomic<u32>, 256>;
var<workgroup> h_lo: array<atomic<u32>, 256>;

// 64-bit atomic add as two u32 atomics: every wrap of lo carries exactly one into hi.
fn wg_add_mass(d: u32, m: vec2u) {
  let old = atomicAdd(&h_lo[d], m.y);
  atomicAdd(&h_hi[d], m.x + select(0u, 1u, old + m.y < old));
}

// Histogram of the digit at RADIX_SHIFT over the values that match the chosen prefix (and, for top-p, survive
// top-k): counts, and for top-p the masses exp(s - max).
@compute @workgroup_size(WG)
fn radix_hist(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  atomicStore(&h_cnt[lid], 0u);
  atomicStore(&h_hi[lid], 0u);
  atomicStore(&h_lo[lid], 0u);
  workgroupBarrier();
  let prefix = state.prefix;
  let mask = state.mask;
  let tau = state.tau;
  let mx = max_value();
  for (var j = 0u; j < BLOCK / WG; j++) {
    let i = wg.x * BLOCK + j * WG + lid;
    if (i < p.V) {
      let key = f32_key(s[i]);
      if ((key & mask) == prefix && key >= tau) {
        let d = (key >> RADIX_SHIFT) & 255u;
        atomicAdd(&h_cnt[d], 1u);
        if (TOP_P_ROUND) { wg_add_mass(d, to_fixed(exp(s[i] - mx))); }
      }
    }
  }
  workgroupBarrier();
  let c = atomicLoad(&h_cnt[lid]);
  if (c > 0u) {
    atomicAdd(&state.cnt[lid], c);
    let lo = atomicLoad(&h_lo[lid]);
    let old = atomicAdd(&state.mass_lo[lid], lo);
    atomicAdd(&state.mass_hi[lid], atomicLoad(&h_hi[lid]) + select(0u, 1u, old + lo < old));
  }
}

// One thread per digit, in descending order (thread j has digit 255 - j), so prefix sums over threads are
// the count / mass of the values above each digit.
var<workgroup> scan: array<vec2u, WG>;
var<workgroup> first_nonempty: atomic<u32>;
var<workgroup> chosen: atomic<u32>;

// Inclusive 64-bit prefix sums of scan[] in place (Hillis-Steele).
fn scan_inclusive(lid: u32) {
  for (var off = 1u; off < WG; off <<= 1u) {
    var v = vec2u(0u);
    if (lid >= off) { v = scan[lid - off]; }
    workgroupBarrier();
    scan[lid] = add64(scan[lid], v);
    workgroupBarrier();
  }
}

// Record digit d of the threshold under search; the last round completes it (and the next search starts afresh).
fn choose_digit(d: u32, prefix: u32, mask: u32) {
  if (RADIX_SHIFT == 0u) {
    state.tau = prefix | d;
    state.prefix = 0u;
    state.mask = 0u;
  } else {
    state.prefix = prefix | (d << RADIX_SHIFT);
    state.mask = mask | (255u << RADIX_SHIFT);
  }
}

@compute @workgroup_size(WG)
fn radix_select(@builtin(local_invocation_index) lid: u32) {
  let d = 255u - lid;
  let cnt = atomicLoad(&state.cnt[d]);
  let mass = vec2u(atomicLoad(&state.mass_hi[d]), atomicLoad(&state.mass_lo[d]));
  atomicStore(&state.cnt[d], 0u);   // clean for the next round
  atomicStore(&state.mass_hi[d], 0u);
  atomicStore(&state.mass_lo[d], 0u);
  let prefix = state.prefix;
  let mask = state.mask;
  let rank = select(state.rank, min(p.top_k, p.V), RADIX_SHIFT == 24u);
  var above = vec2u(state.above_hi, state.above_lo);
  var budget = vec2u(state.budget_hi, state.budget_lo);
  if (lid == 0u) {
    atomicStore(&first_nonempty, WG);
    atomicStore(&chosen, 0u);
  }
  scan[lid] = select(vec2u(0u, cnt), mass, TOP_P_ROUND);
  storageBarrier();     // every state read above happens before any thread writes state below
  workgroupBarrier();
  scan_inclusive(lid);

  if (!TOP_P_ROUND) {
    // top-k: the digit holding the rank-th largest value; the rank continues inside it
    let incl = scan[lid].y;
    let excl = incl - cnt;
    if (excl < rank && rank <= incl) {
      state.rank = rank - excl;
      choose_digit(d, prefix, mask);
    }
    return;
  }
  // top-p: HF drops a value once the mass above it reaches top_p of the survivors' total, keeping at least
  // the largest. The threshold is the lowest value whose mass strictly above is < budget: the lowest such digit.
  if (RADIX_SHIFT == 24u) {
    budget = to_fixed(p.top_p * fixed_f32(scan[WG - 1u]));
    above = vec2u(0u);
  }
  let excl = add64(above, sub64(scan[lid], mass));
  if (cnt > 0u) { atomicMin(&first_nonempty, lid); }
  workgroupBarrier();
  if (cnt > 0u && (lid == atomicLoad(&first_nonempty) || lt64(excl, budget))) { atomicMax(&chosen, lid); }
  workgroupBarrier();
  if (lid == atomicLoad(&chosen)) {
    state.above_hi = excl.x;
    state.above_lo = excl.y;
    state.budget_hi = budget.x;
    state.budget_lo = budget.y;
    choose_digit(d, prefix, mask);
  }
}

// ---- sampler: the draw ------------------------------------------------------------------------------------

// The fixed-point probability mass of element i if it is kept, else 0.
fn kept_mass(i: u32, tau: u32, mx: f32) -> vec2u {
  if (i >= p.V || f32_key(s[i]) < tau) { return vec2u(0u); }
  return to_fixed(exp(s[i] - mx));
}

// Mass of the kept elements of each block of 1024.
@compute @workgroup_size(WG)
fn block_mass(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tau = state.tau;
  let mx = max_value();
  var m = vec2u(0u);
  for (var j = 0u; j < 4u; j++) { m = add64(m, kept_mass(wg.x * BLOCK + 4u * lid + j, tau, mx)); }
  scan[lid] = m;
  workgroupBarrier();
  scan_inclusive(lid);
  if (lid == WG - 1u) {
    state.block_hi[wg.x] = scan[lid].x;
    state.block_lo[wg.x] = scan[lid].y;
  }
}

var<workgroup> pick_block: u32;
var<workgroup> pick_rest: vec2u;

fn block_total(b: u32) -> vec2u {
  if (b >= p.blocks) { return vec2u(0u); }
  return vec2u(state.block_hi[b], state.block_lo[b]);
}

// The first kept id whose inclusive cumulative mass exceeds goal = random · total (integers, so exact):
// prefix sums over the blocks (two per thread) find the block, then over the block's 4-element runs.
@compute @workgroup_size(WG)
fn pick(@builtin(local_invocation_index) lid: u32) {
  let tau = state.tau;
  let mx = max_value();
  let m0 = block_total(2u * lid);
  let m1 = block_total(2u * lid + 1u);
  scan[lid] = add64(m0, m1);
  workgroupBarrier();
  scan_inclusive(lid);
  let total = scan[WG - 1u];
  var goal = to_fixed(p.random * fixed_f32(total));
  let last = sub64(total, vec2u(0u, 1u));
  if (lt64(last, goal)) { goal = last; }   // random rounded up to 1
  var excl = sub64(scan[lid], add64(m0, m1));
  if (!lt64(goal, excl) && lt64(goal, scan[lid])) {
    let r = sub64(goal, excl);
    pick_block = select(2u * lid + 1u, 2u * lid, lt64(r, m0));
    pick_rest = select(sub64(r, m0), r, lt64(r, m0));
  }
  workgroupBarrier();

  let base = pick_block * BLOCK + 4u * lid;
  let rest = pick_rest;
  var m: array<vec2u, 4>;
  var own = vec2u(0u);
  for (var j = 0u; j < 4u; j++) {
    m[j] = kept_mass(base + j, tau, mx);
    own = add64(own, m[j]);
  }
  scan[lid] = own;
  workgroupBarrier();
  scan_inclusive(lid);
  excl = sub64(scan[lid], own);
  if (!lt64(rest, excl) && lt64(rest, scan[lid])) {
    var r = sub64(rest, excl);
    var j = 0u;
    while (j < 3u && !lt64(r, m[j])) {
      r = sub64(r, m[j]);
      j++;
    }
    token[0] = base + j;
  }
}
