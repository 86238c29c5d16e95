// Gated DeltaNet: gate/norm prep (REFERENCE.md §2.1 steps 5-7) and the recurrent decode step (§2.1 step 8,
// §2.4). The chunked prefill is in gdn_chunk.wgsl.
//
// Layouts (f32): y (T, CONV) conv output = [q (HK, DK) | k (HK, DK) | v (HV, DV)]; q̂, k̂ (T, HK, DK) stay at
// key heads: value head h reads key head h / (HV/HK) (repeat_interleave, not h mod HK); g, beta (T, HV);
// state (HV, DK, DV) in HF order (dv fastest); o (T, HV, DV).
#include "common.wgsl"

override HK: u32;          // key heads
override HV: u32;          // value heads (a multiple of HK)
override DK: u32;          // key head dim
override DV: u32;          // value head dim
override CONV: u32 = 2u * HK * DK + HV * DV;
override WG: u32 = 64u;    // gdn_prep: threads per row (power of two); gdn_recurrent: threads per workgroup
override CB: u32 = 32u;    // gdn_recurrent: state columns per workgroup (divides WG)

const L2_EPS = 1e-6;       // hard-coded in HF's l2norm, independent of rms_norm_eps

struct Params { T: u32, P: u32, b_off: u32, a_off: u32 }   // tokens; gdn_prep: proj row stride, b and a columns

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;                 // (T, CONV)

var<workgroup> red: array<f32, WG>;

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
  let row = wg.x + wg.y * 65535u;
  if (row >= p.T * 2u * HK) { return; }
  let t = row / (2u * HK);
  let r = row % (2u * HK);           // r < HK: q head r; else k head r - HK
  let src = t * CONV + r * DK;       // q_all then k_all: either head starts at r·DK

  var ss = 0.0;
  for (var i = l.x; i < DK; i += WG) { let v = y[src + i]; ss += v * v; }
  red[l.x] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (l.x < s) { red[l.x] += red[l.x + s]; }
    workgroupBarrier();
  }
  let inv = inverseSqrt(red[0] + L2_EPS);
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

// One token of the delta rule for this thread's column, with q̂, k̂ in qs, ks. Column dot products over DK are
// reduced across the WG/CB row groups in workgroup memory. Each thread only re-reads the state entries it wrote
// itself, so tokens can loop inside a kernel.
fn delta_step(t: u32, w: Cols, decay: f32, beta_t: f32, lid: u32) {
  let RG = WG / CB;
  let s0 = w.h * DK * DV + w.b;
  var part = 0.0;                  // this row group's share of (Sᵀk̂)[b]
  if (w.live) { for (var a = w.ra; a < DK; a += RG) { part += state[s0 + a * DV] * ks[a]; } }
  red[lid] = part;
  workgroupBarrier();
  var sk = 0.0;
  for (var r = 0u; r < RG; r++) { sk += red[r * CB + w.c]; }
  var v = 0.0;
  if (w.live) { v = y[t * CONV + 2u * HK * DK + w.h * DV + w.b]; }
  let e = beta_t * (v - decay * sk);   // S'ᵀk̂ = e^g Sᵀk̂
  workgroupBarrier();              // everyone has read red

  var out = 0.0;
  if (w.live) {
    for (var a = w.ra; a < DK; a += RG) {
      let s = decay * state[s0 + a * DV] + ks[a] * e;
      state[s0 + a * DV] = s;
      out += s * qs[a];
    }
  }
  red[lid] = out;
  workgroupBarrier();
  if (w.ra == 0u && w.live) {
    var acc = 0.0;
    for (var r = 0u; r < RG; r++) { acc += red[r * CB + w.c]; }
    o[(t * HV + w.h) * DV + w.b] = acc;
  }
  workgroupBarrier();              // before the next token overwrites red, qs, ks
}

// From q̂, k̂, g, beta made by gdn_prep (prefill taps, tests).
@compute @workgroup_size(WG)
fn gdn_recurrent(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let flat = wg.x + wg.y * 65535u;
  if (flat >= HV * COL_BLOCKS) { return; }
  let w = cols_of(flat, lid);
  for (var t = 0u; t < p.T; t++) {
    let qk = (t * HK + w.kh) * DK;
    for (var a = lid; a < DK; a += WG) { qs[a] = query[qk + a]; ks[a] = key[qk + a]; }
    workgroupBarrier();
    delta_step(t, w, exp(g[t * HV + w.h]), beta[t * HV + w.h], lid);
  }
}

// ---- gdn_step: gdn_prep fused into gdn_recurrent (decode: one dispatch instead of two). Each workgroup
// normalises its key head's q and k from the conv output itself and computes its head's g and beta.

@group(0) @binding(2) var<storage, read> step_proj: array<f32>;         // (T, P) b at column b_off + h, a at a_off + h
@group(0) @binding(3) var<storage, read> step_a_log: array<f32>;        // (HV)
@group(0) @binding(4) var<storage, read> step_dt_bias: array<f32>;      // (HV)
// binding 5 unused; state and o at 6 and 7 as in gdn_recurrent

var<workgroup> red_k: array<f32, WG>;

@compute @workgroup_size(WG)
fn gdn_step(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let flat = wg.x + wg.y * 65535u;
  if (flat >= HV * COL_BLOCKS) { return; }
  let w = cols_of(flat, lid);
  for (var t = 0u; t < p.T; t++) {
    let qsrc = t * CONV + w.kh * DK;
    let ksrc = qsrc + HK * DK;
    var sq = 0.0;
    var sk = 0.0;
    for (var a = lid; a < DK; a += WG) { let q = y[qsrc + a]; let k = y[ksrc + a]; sq += q * q; sk += k * k; }
    red[lid] = sq;
    red_k[lid] = sk;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
      if (lid < s) { red[lid] += red[lid + s]; red_k[lid] += red_k[lid + s]; }
      workgroupBarrier();
    }
    let inv_q = inverseSqrt(red[0] + L2_EPS) * inverseSqrt(f32(DK));
    let inv_k = inverseSqrt(red_k[0] + L2_EPS);
    for (var a = lid; a < DK; a += WG) { qs[a] = y[qsrc + a] * inv_q; ks[a] = y[ksrc + a] * inv_k; }
    workgroupBarrier();              // qs, ks written; red read by everyone
    let a_t = step_proj[t * p.P + p.a_off + w.h];
    let b_t = step_proj[t * p.P + p.b_off + w.h];
    let g_t = -exp(step_a_log[w.h]) * softplus(a_t + step_dt_bias[w.h]);
    delta_step(t, w, exp(g_t), sigmoid(b_t), lid);
  }
}
