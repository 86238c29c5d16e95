// Gated DeltaNet: gate/norm prep (REFERENCE.md §2.1 steps 5-7) and the recurrent decode step (§2.1 step 8,
// §2.4). The chunked prefill is in gdn_chunk.wgsl.
//
// Layouts (f32): y (T, CONV) conv output = [q (HK, DK) | k (HK, DK) | v (HV, DV)]; q̂, k̂ (T, HK, DK) stay at
// key heads: value head h reads key head h / (HV/HK) (repeat_interleave, not h mod HK); g, beta (T, HV);
// state (HV, DK, DV) in HF order (dv fastest); o (T, HV, DV).
#include "common.wgsl"
#include "reduce.wgsl"

override HK: u32;          // key heads
override HV: u32;          // value heads (a multiple of HK)
override DK: u32;          // key head dim
override DV: u32;          // value head dim
override CONV: u32 = 2u * HK * DK + HV * DV;
override WG: u32 = 64u;    // gdn_prep: threads per row (power of two); gdn_recurrent: threads per workgroup
override TEAM: u32 = 32u;  // reduce.wgsl
override CB: u32 = 32u;    // gdn_recurrent: state columns per workgroup (divides WG)
override SNAP: bool = false; // gdn_step: also write the state after each token but the last (a speculative verify)

const L2_EPS = 1e-6;       // hard-coded in HF's l2norm, independent of rms_norm_eps

struct Params { T: u32, P: u32, b_off: u32, a_off: u32 }   // tokens; gdn_prep: proj row stride, b and a columns

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;                 // (T, CONV)


// ---- gdn_prep: q̂ = l2norm(q)·DK^-1/2, k̂ = l2norm(k), g = -exp(A_log)·softplus(a + dt_bias), beta = sigmoid(b)

@group(0) @binding(2) var<storage, read> proj: array<f32>;              // (T, P) b at column b_off + h, a at a_off + h
@group(0) @binding(3) var<storage, read> a_log: array<f32>;             // (HV)
@group(0) @binding(4) var<storage, read> dt_bias: array<f32>;           // (HV)
@group(0) @binding(5) var<storage, read_write> q_out: array<f32>;       // (T, HK, DK)
@group(0) @binding(6) var<storage, read_write> k_out: array<f32>;       // (T, HK, DK)
@group(0) @binding(7) var<storage, read_write> g_out: array<f32>;       // (T, HV)
@group(0) @binding(8) var<storage, read_write> beta_out: array<f32>;    // (T, HV)

// One workgroup per (token, q or k head); the workgroups of head row 0 also do the token's gates.
@compute @workgroup_size(WG)
fn gdn_prep(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let row = flat_group(wg);
  if (row >= p.T * 2u * HK) { return; }
  let t = row / (2u * HK);
  let r = row % (2u * HK);           // r < HK: q head r; else k head r - HK
  let src = t * CONV + r * DK;       // q_all then k_all: either head starts at r·DK

  var ss = 0.0;
  for (var i = l.x; i < DK; i += WG) { let v = y[src + i]; ss += v * v; }
  let inv = inverseSqrt(workgroup_sum(l.x, ss) + L2_EPS);
  if (r < HK) {
    let scale = inverseSqrt(f32(DK));
    for (var i = l.x; i < DK; i += WG) { q_out[(t * HK + r) * DK + i] = y[src + i] * inv * scale; }
  } else {
    for (var i = l.x; i < DK; i += WG) { k_out[(t * HK + r - HK) * DK + i] = y[src + i] * inv; }
  }

  if (r == 0u) {
    for (var h = l.x; h < HV; h += WG) {
      let a = proj[t * p.P + p.a_off + h];
      let b = proj[t * p.P + p.b_off + h];
      g_out[t * HV + h] = -exp(a_log[h]) * softplus(a + dt_bias[h]);
      beta_out[t * HV + h] = sigmoid(b);
    }
  }
}

// ---- gdn_recurrent: per token S' = e^g S; e = β(v − S'ᵀk̂); S = S' + k̂eᵀ; o = Sᵀq̂ (decay first, read updated S)

@group(0) @binding(2) var<storage, read> query: array<f32>;             // (T, HK, DK) q̂
@group(0) @binding(3) var<storage, read> key: array<f32>;               // (T, HK, DK) k̂
@group(0) @binding(4) var<storage, read> g: array<f32>;                 // (T, HV)
@group(0) @binding(5) var<storage, read> beta: array<f32>;              // (T, HV)
@group(0) @binding(6) var<storage, read_write> state: array<f32>;       // (HV, DK, DV)
@group(0) @binding(7) var<storage, read_write> o: array<f32>;           // (T, HV, DV)

var<workgroup> qs: array<f32, DK>;   // q̂ of the token's key head
var<workgroup> ks: array<f32, DK>;   // k̂ of the token's key head

// Workgroup (h, column block) of both entry points below: thread (ra, c) owns column b = b0 + c, rows
// a ≡ ra mod WG/CB. Adjacent threads take adjacent columns, so state rows are read coalesced.
struct Cols { h: u32, kh: u32, b: u32, c: u32, ra: u32, live: bool }

override COL_BLOCKS: u32 = (DV + CB - 1u) / CB;   // column blocks a value head: HV · COL_BLOCKS workgroups

fn cols_of(flat: u32, lid: u32) -> Cols {
  let h = flat / COL_BLOCKS;
  let b = (flat % COL_BLOCKS) * CB + lid % CB;
  return Cols(h, h / (HV / HK), b, lid % CB, lid / CB, b < DV);
}

// This thread's rows of its column of the head's state (rows ra, ra + RG, ...; RG = WG / CB row groups), kept in
// registers for all of the step's tokens: read once before them, written once after.
const SMAX = 32u;                  // rows a thread: DK <= SMAX · WG / CB (gdn.ts checks)
var<private> st: array<f32, SMAX>;
var<workgroup> col_part: array<f32, WG>;   // per-thread column partials, summed over the row groups

fn state_load(w: Cols) {
  let RG = WG / CB;
  for (var i = 0u; i < (DK + RG - 1u) / RG; i++) {
    let a = w.ra + i * RG;
    st[i] = select(0.0, state[w.h * DK * DV + a * DV + w.b], w.live && a < DK);
  }
}

fn state_store(w: Cols) {
  let RG = WG / CB;
  for (var i = 0u; i < (DK + RG - 1u) / RG; i++) {
    let a = w.ra + i * RG;
    if (w.live && a < DK) { state[w.h * DK * DV + a * DV + w.b] = st[i]; }
  }
}

// Σ over the row groups of every thread's `v` for its column, returned to all (two barriers).
fn column_sum(w: Cols, lid: u32, v: f32) -> f32 {
  col_part[lid] = v;
  workgroupBarrier();
  var s = 0.0;
  for (var r = 0u; r < WG / CB; r++) { s += col_part[r * CB + w.c]; }
  workgroupBarrier();
  return s;
}

// One token of the delta rule on this thread's column (state in `st`), with q̂, k̂ in qs, ks.
fn delta_step(t: u32, w: Cols, decay: f32, beta_t: f32, lid: u32) {
  let RG = WG / CB;
  let n = (DK + RG - 1u) / RG;
  var part = 0.0;                  // this row group's share of (Sᵀk̂)[b]
  for (var i = 0u; i < n; i++) { part += st[i] * ks[min(w.ra + i * RG, DK - 1u)]; }   // rows past DK hold 0
  let sk = column_sum(w, lid, part);
  var v = 0.0;
  if (w.live) { v = y[t * CONV + 2u * HK * DK + w.h * DV + w.b]; }
  let e = beta_t * (v - decay * sk);   // S'ᵀk̂ = e^g Sᵀk̂
  var out = 0.0;
  for (var i = 0u; i < n; i++) {
    let a = min(w.ra + i * RG, DK - 1u);
    let live = w.ra + i * RG < DK;
    st[i] = select(0.0, decay * st[i] + ks[a] * e, live);
    out += st[i] * qs[a];
  }
  let acc = column_sum(w, lid, out);
  if (w.ra == 0u && w.live) { o[(t * HV + w.h) * DV + w.b] = acc; }
}

// From q̂, k̂, g, beta made by gdn_prep (prefill taps, tests).
@compute @workgroup_size(WG)
fn gdn_recurrent(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let flat = flat_group(wg);
  if (flat >= HV * COL_BLOCKS) { return; }
  let w = cols_of(flat, lid);
  state_load(w);
  for (var t = 0u; t < p.T; t++) {
    let qk = (t * HK + w.kh) * DK;
    for (var a = lid; a < DK; a += WG) { qs[a] = query[qk + a]; ks[a] = key[qk + a]; }
    workgroupBarrier();
    delta_step(t, w, exp(g[t * HV + w.h]), beta[t * HV + w.h], lid);
  }
  state_store(w);
}

// ---- gdn_step: gdn_prep fused into gdn_recurrent (decode: one dispatch instead of two). Each workgroup
// normalises its key head's q and k from the conv output itself and computes its head's g and beta.

@group(0) @binding(2) var<storage, read> step_proj: array<f32>;         // (T, P) b at column b_off + h, a at a_off + h
@group(0) @binding(3) var<storage, read> step_a_log: array<f32>;        // (HV)
@group(0) @binding(4) var<storage, read> step_dt_bias: array<f32>;      // (HV)
@group(0) @binding(5) var<storage, read_write> snaps: array<f32>;       // (T-1, HV, DK, DV) the state after token t (SNAP)
// state and o at 6 and 7 as in gdn_recurrent

@compute @workgroup_size(WG)
fn gdn_step(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let flat = flat_group(wg);
  if (flat >= HV * COL_BLOCKS) { return; }
  let w = cols_of(flat, lid);
  state_load(w);
  for (var t = 0u; t < p.T; t++) {
    let qsrc = t * CONV + w.kh * DK;
    let ksrc = qsrc + HK * DK;
    var sq = 0.0;
    var sk = 0.0;
    for (var a = lid; a < DK; a += WG) { let q = y[qsrc + a]; let k = y[ksrc + a]; sq += q * q; sk += k * k; }
    let inv_q = inverseSqrt(workgroup_sum(lid, sq) + L2_EPS) * inverseSqrt(f32(DK));
    let inv_k = inverseSqrt(workgroup_sum(lid, sk) + L2_EPS);
    for (var a = lid; a < DK; a += WG) { qs[a] = y[qsrc + a] * inv_q; ks[a] = y[ksrc + a] * inv_k; }
    workgroupBarrier();              // qs, ks written
    let a_t = step_proj[t * p.P + p.a_off + w.h];
    let b_t = step_proj[t * p.P + p.b_off + w.h];
    let g_t = -exp(step_a_log[w.h]) * softplus(a_t + step_dt_bias[w.h]);
    delta_step(t, w, exp(g_t), sigmoid(b_t), lid);
    if (SNAP && t + 1u < p.T) { state_snapshot(w, t); }
  }
  state_store(w);
}

// The rows `st` holds after token t, into snapshot t (a rejected draft rolls the state back to it with a copy).
fn state_snapshot(w: Cols, t: u32) {
  let RG = WG / CB;
  for (var i = 0u; i < (DK + RG - 1u) / RG; i++) {
    let a = w.ra + i * RG;
    if (w.live && a < DK) { snaps[t * HV * DK * DV + w.h * DK * DV + a * DV + w.b] = st[i]; }
  }
}
