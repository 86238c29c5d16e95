// Gated softmax attention (REFERENCE.md §3):
//   attn_prep              q/k zero-centred RMSNorm, partial NeoX RoPE, gate split, K/V written into the cache
//   attn_prefill           causal GQA flash attention, sigmoid(gate) fused into the write
//   attn_split + combine   the same loop over one slice of the keys per workgroup (flash-decoding), then a
//                          dispatch that merges the slices' (max, sum, acc) and applies the gate
//   attn_decode + combine  one new token: attn_prep and attn_split in one dispatch, a warp per query head
// Each entry point binds its own resources; bindings are numbered per entry point, so a number can name
// different buffers in different entry points. The K/V caches hold KvVec4s (kv.wgsl: f32, or f16 in kv.f16.wgsl),
// four head dims each, read and written through kv_load / kv_store.
#include "common.wgsl"
#include "reduce.wgsl"
#include "kv.wgsl"

override D: u32;      // head_dim
override HQ: u32;     // query heads
override HKV: u32;    // key/value heads; kv head g serves query heads g*G .. g*G+G-1
override MAX_T: u32;  // cache capacity in positions
override G: u32 = HQ / HKV;

struct Params {
  T: u32,          // new tokens
  pos0: u32,       // absolute position of token 0 (= cached tokens before this call)
  split_len: u32,  // keys per split (attn_split / attn_combine)
  n_split: u32,
}
@group(0) @binding(0) var<uniform> p: Params;

// ---- 1. attn_prep: one workgroup per (token, head), heads 0..HQ-1 are q heads, then HKV k/v heads -----------

override R: u32;             // rotary dims (first R of each head)
override EPS: f32 = 1e-6;
override ROPE_SCALE: f32 = 1.0;  // multiplies cos and sin: YaRN's attention factor (HF's attention_scaling)
override WG: u32 = 64u;      // attn_prep: threads per head row (power of two); attn_decode: G · TEAM
override TEAM: u32 = 32u;    // reduce.wgsl; attn_decode: lanes a head (D / TEAM dims each)

@group(0) @binding(1) var<storage, read> qkv: array<f32>;              // (T, HQ*2D + 2*HKV*D): [q|gate per head][k][v]
@group(0) @binding(2) var<storage, read> q_norm: array<f32>;           // (D)
@group(0) @binding(3) var<storage, read> k_norm: array<f32>;           // (D)
@group(0) @binding(4) var<storage, read> inv_freq: array<f32>;         // (R/2)
@group(0) @binding(5) var<storage, read_write> q_out: array<f32>;      // (T, HQ, D)
@group(0) @binding(6) var<storage, read_write> gate_out: array<f32>;   // (T, HQ, D)
@group(0) @binding(7) var<storage, read_write> k_cache_w: array<KvVec4>;  // (HKV, MAX_T, D / 4)
@group(0) @binding(8) var<storage, read_write> v_cache_w: array<KvVec4>;  // (HKV, MAX_T, D / 4)

var<workgroup> head_row: array<f32, D>;
var<workgroup> head_out: array<f32, D>;  // a k head after RoPE, stored four dims at a time

// (cos, sin) of an f32 angle, which reaches ~3e5 rad at long context. GPU cos/sin are accurate only to ~1e-4
// (SwiftShader) and only near [-pi, pi], so reduce and evaluate here: subtract k*2pi with 2pi split in three
// parts (Cody-Waite; k*6.28125 is exact for k < 2^16, the rest costs < 1e-6 rad at position 32K), then a quadrant
// of pi/2, then Cephes' single-precision polynomials on [-pi/4, pi/4].
fn cos_sin(phi: f32) -> vec2f {
  let k = round(phi * 0.15915494);
  let r = ((phi - k * 6.28125) - k * 1.9353071693331003e-3) - k * 1.0253376e-11;
  let j = round(r * 0.63661977);
  let x = ((r - j * 1.5703125) - j * 4.8375129699707031e-4) - j * 7.5497899548918822e-8;
  let z = x * x;
  let s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * x + x;
  let c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
  switch (i32(j) & 3) {
    case 1: { return vec2f(-s, c); }
    case 2: { return vec2f(-c, -s); }
    case 3: { return vec2f(s, -c); }
    default: { return vec2f(c, s); }
  }
}

@compute @workgroup_size(WG)
fn attn_prep(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let idx = flat_group(wg);
  if (idx >= p.T * (HQ + HKV)) { return; }  // uniform per workgroup
  let t = idx / (HQ + HKV);
  let head = idx % (HQ + HKV);
  let is_q = head < HQ;
  let kvh = head - select(HQ, 0u, is_q);     // kv head (unused for q heads)
  let row = t * (HQ * 2u * D + 2u * HKV * D);
  let src = select(row + HQ * 2u * D + kvh * D, row + head * 2u * D, is_q);

  // zero-centred RMSNorm over the head's D dims
  var ss = 0.0;
  for (var i = l.x; i < D; i += WG) { let v = qkv[src + i]; head_row[i] = v; ss += v * v; }
  let inv = inverseSqrt(workgroup_sum(l.x, ss) / f32(D) + EPS);
  for (var i = l.x; i < D; i += WG) {
    head_row[i] = head_row[i] * inv * (1.0 + select(k_norm[i], q_norm[i], is_q));
  }
  workgroupBarrier();

  // partial NeoX RoPE: element i < R/2 pairs with i + R/2; the angle is f32(pos) * inv_freq rounded in f32 as HF
  let pos = p.pos0 + t;
  let hr = R / 2u;
  for (var i = l.x; i < D; i += WG) {
    var y = head_row[i];
    if (i < R) {
      let j = i % hr;
      let cs = cos_sin(f32(pos) * inv_freq[j]) * ROPE_SCALE;
      let a = head_row[j];
      let b = head_row[j + hr];
      y = select(b * cs.x + a * cs.y, a * cs.x - b * cs.y, i < hr);
    }
    if (is_q) {
      let o = (t * HQ + head) * D + i;
      q_out[o] = y;
      gate_out[o] = qkv[src + D + i];
    } else {
      head_out[i] = y;
    }
  }
  workgroupBarrier();
  if (!is_q) {
    let v = row + HQ * 2u * D + HKV * D + kvh * D;
    for (var c = l.x; c < D / 4u; c += WG) {
      let o = (kvh * MAX_T + pos) * (D / 4u) + c;
      let i = 4u * c;
      k_cache_w[o] = kv_store(vec4f(head_out[i], head_out[i + 1u], head_out[i + 2u], head_out[i + 3u]));
      v_cache_w[o] = kv_store(vec4f(qkv[v + i], qkv[v + i + 1u], qkv[v + i + 2u], qkv[v + i + 3u]));
    }
  }
}

// ---- 2. flash attention -----------------------------------------------------------------------------------
// Rows are (token, query head within the kv group) pairs, r = t*G + gi, so the G query heads that share a kv
// head share every K/V tile (GQA). A workgroup owns BQ rows of one kv head and a range of keys (the whole causal
// range for prefill, one split for decode). Keys pass through workgroup memory BK at a time, the head dim DC at
// a time. Threads form a TR x TC grid: thread (ty, tx) owns the scores of rows ty + TR*a and keys tx + TC*b,
// and the output columns tx + TC*c of the same rows. Softmax is online: running max m and sum l per row.

override BQ: u32 = 32u;
override BK: u32 = 32u;
override DC: u32 = 32u;
override TR: u32 = 16u;
override TC: u32 = 16u;
override ROWS_PT: u32 = BQ / TR;  // rows per thread
override KPT: u32 = BK / TC;  // keys per thread
override CPT: u32 = D / TC;   // output columns per thread
const MAX_S = 4;    // >= ROWS_PT * KPT
const MAX_ACC = 32; // >= ROWS_PT * CPT (2 rows x 256/16 columns for prefill at D = 256)
const NEG = -3.0e38;  // "minus infinity" that stays finite: exp(NEG - m) is 0, and NEG - NEG is 0

@group(0) @binding(1) var<storage, read> q: array<f32>;        // (T, HQ, D), normed + rotated
@group(0) @binding(2) var<storage, read> k_cache: array<KvVec4>;  // (HKV, MAX_T, D / 4)
@group(0) @binding(3) var<storage, read> v_cache: array<KvVec4>;  // (HKV, MAX_T, D / 4)

var<workgroup> q_tile: array<f32, BQ * DC>;          // head-dim chunk of the rows' queries, times D^-1/2
var<workgroup> kv_tile: array<f32, BK * (DC + 1u)>;  // head-dim chunk of BK keys or values (+1: no bank conflicts)
var<workgroup> p_tile: array<f32, BQ * (BK + 1u)>;   // masked scores, then probabilities
var<workgroup> row_m: array<f32, BQ>;                // running max
var<workgroup> row_l: array<f32, BQ>;                // running sum of exp(score - m)
var<workgroup> row_alpha: array<f32, BQ>;            // exp(m_old - m_new) of the current tile
var<private> acc: array<f32, MAX_ACC>;               // unnormalised output rows, [a * CPT + c]

// Head-dim chunk dc of BK keys or values (k0.., valid below kend) into kv_tile, four dims a load.
fn load_kv_tile(lid: u32, is_k: bool, g: u32, k0: u32, kend: u32, dc: u32) {
  for (var i = lid; i < BK * DC / 4u; i += TR * TC) {
    let key = k0 + (4u * i) / DC;
    let c = (4u * i) % DC;
    let o = (g * MAX_T + min(key, kend - 1u)) * (D / 4u) + (dc + c) / 4u;
    var w: KvVec4;
    if (is_k) { w = k_cache[o]; } else { w = v_cache[o]; }
    let v = select(vec4f(0.0), kv_load(w), key < kend);
    let t = (key - k0) * (DC + 1u) + c;
    kv_tile[t] = v.x;
    kv_tile[t + 1u] = v.y;
    kv_tile[t + 2u] = v.z;
    kv_tile[t + 3u] = v.w;
  }
}

// Offset of packed row r's head vector in a (T, HQ, D) tensor.
fn row_offset(r: u32, g: u32) -> u32 {
  return ((r / G) * HQ + g * G + r % G) * D;
}

// Online softmax attention of rows row0..row0+BQ-1 of kv head g over keys kbeg..kend-1 (causal inside).
fn flash(lid: u32, row0: u32, g: u32, kbeg: u32, kend: u32) {
  let ty = lid / TC;
  let tx = lid % TC;
  let rows = p.T * G;
  let scale = inverseSqrt(f32(D));
  for (var i = 0u; i < ROWS_PT * CPT; i++) { acc[i] = 0.0; }
  if (lid < BQ) { row_m[lid] = NEG; row_l[lid] = 0.0; }
  workgroupBarrier();

  for (var k0 = kbeg; k0 < kend; k0 += BK) {
    // scores of this key tile, head-dim chunk by chunk
    // zeroed explicitly: Dawn on SwiftShader kept the previous tile's values in a re-declared loop-local array
    var s: array<f32, MAX_S>;
    for (var i = 0u; i < ROWS_PT * KPT; i++) { s[i] = 0.0; }
    for (var dc = 0u; dc < D; dc += DC) {
      for (var i = lid; i < BQ * DC; i += TR * TC) {
        let r = row0 + i / DC;
        q_tile[i] = select(0.0, q[row_offset(min(r, rows - 1u), g) + dc + i % DC] * scale, r < rows);
      }
      load_kv_tile(lid, true, g, k0, kend, dc);
      workgroupBarrier();
      for (var c = 0u; c < DC; c++) {
        for (var a = 0u; a < ROWS_PT; a++) {
          let qv = q_tile[(ty + TR * a) * DC + c];
          for (var b = 0u; b < KPT; b++) { s[a * KPT + b] += qv * kv_tile[(tx + TC * b) * (DC + 1u) + c]; }
        }
      }
      workgroupBarrier();
    }

    // causal mask: row r (token r / G) at absolute position pos0 + r/G sees keys up to that position
    for (var a = 0u; a < ROWS_PT; a++) {
      let r = ty + TR * a;
      for (var b = 0u; b < KPT; b++) {
        let key = k0 + tx + TC * b;
        let visible = key < kend && key <= p.pos0 + (row0 + r) / G;
        p_tile[r * (BK + 1u) + tx + TC * b] = select(NEG, s[a * KPT + b], visible);
      }
    }
    workgroupBarrier();

    // online softmax update, one thread per row
    if (lid < BQ) {
      let m_old = row_m[lid];
      var m = m_old;
      for (var j = 0u; j < BK; j++) { m = max(m, p_tile[lid * (BK + 1u) + j]); }
      var sum = 0.0;
      for (var j = 0u; j < BK; j++) {
        let sc = p_tile[lid * (BK + 1u) + j];
        let e = select(0.0, exp(sc - m), sc > NEG);
        p_tile[lid * (BK + 1u) + j] = e;
        sum += e;
      }
      let alpha = exp(m_old - m);
      row_alpha[lid] = alpha;
      row_l[lid] = row_l[lid] * alpha + sum;
      row_m[lid] = m;
    }
    workgroupBarrier();

    // acc = acc * alpha + P V, head-dim chunk by chunk
    for (var a = 0u; a < ROWS_PT; a++) {
      let alpha = row_alpha[ty + TR * a];
      for (var c = 0u; c < CPT; c++) { acc[a * CPT + c] *= alpha; }
    }
    for (var dc = 0u; dc < D; dc += DC) {
      load_kv_tile(lid, false, g, k0, kend, dc);
      workgroupBarrier();
      for (var a = 0u; a < ROWS_PT; a++) {
        let prow = (ty + TR * a) * (BK + 1u);
        for (var c = 0u; c < DC / TC; c++) {
          var o = 0.0;
          for (var j = 0u; j < BK; j++) { o += p_tile[prow + j] * kv_tile[j * (DC + 1u) + tx + TC * c]; }
          acc[a * CPT + dc / TC + c] += o;
        }
      }
      workgroupBarrier();
    }
  }
}

// ---- 2a. attn_prefill: workgroup = (row tile, kv head), all causal keys; out = softmax(q kᵀ) v ⊙ sigmoid(gate)

@group(0) @binding(4) var<storage, read> gate: array<f32>;          // (T, HQ, D)
@group(0) @binding(5) var<storage, read_write> out: array<f32>;     // (T, HQ*D)

@compute @workgroup_size(TR * TC)
fn attn_prefill(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tiles = (p.T * G + BQ - 1u) / BQ;
  let idx = flat_group(wg);
  if (idx >= tiles * HKV) { return; }
  // neighbouring workgroups share a kv head (L2 reuse); the longest (last) row tiles start first
  let g = idx / tiles;
  let row0 = (tiles - 1u - idx % tiles) * BQ;
  let last_t = min((row0 + BQ - 1u) / G, p.T - 1u);
  flash(lid, row0, g, 0u, p.pos0 + last_t + 1u);

  let ty = lid / TC;
  let tx = lid % TC;
  for (var a = 0u; a < ROWS_PT; a++) {
    let r = ty + TR * a;
    if (row0 + r >= p.T * G) { continue; }
    let base = row_offset(row0 + r, g);
    let inv_l = 1.0 / row_l[r];
    for (var c = 0u; c < CPT; c++) {
      let o = base + tx + TC * c;
      out[o] = acc[a * CPT + c] * inv_l * sigmoid(gate[o]);
    }
  }
}

// ---- 2b. attn_split: workgroup = (row tile, kv head, split of split_len keys); writes unnormalised partials

@group(0) @binding(4) var<storage, read_write> part_o: array<f32>;    // (n_split, T, HQ, D): sum of p * v
@group(0) @binding(5) var<storage, read_write> part_ml: array<vec2f>; // (n_split, T, HQ): (max, sum of p)

@compute @workgroup_size(TR * TC)
fn attn_split(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tiles = (p.T * G + BQ - 1u) / BQ;
  let idx = flat_group(wg);
  if (idx >= tiles * HKV * p.n_split) { return; }
  let row0 = (idx % tiles) * BQ;
  let g = (idx / tiles) % HKV;
  let split = idx / (tiles * HKV);
  let last_t = min((row0 + BQ - 1u) / G, p.T - 1u);
  let kbeg = split * p.split_len;
  // a split past the tile's causal end still runs (zero iterations) so that every partial gets written
  flash(lid, row0, g, kbeg, max(kbeg, min(kbeg + p.split_len, p.pos0 + last_t + 1u)));

  let ty = lid / TC;
  let tx = lid % TC;
  let part = split * p.T * HQ * D;
  for (var a = 0u; a < ROWS_PT; a++) {
    let r = ty + TR * a;
    if (row0 + r >= p.T * G) { continue; }
    let base = part + row_offset(row0 + r, g);
    for (var c = 0u; c < CPT; c++) { part_o[base + tx + TC * c] = acc[a * CPT + c]; }
    if (tx == 0u) { part_ml[base / D] = vec2f(row_m[r], row_l[r]); }
  }
}

// ---- 2c. attn_combine: one workgroup per (token, q head) and CW columns; merges the splits, applies the gate.
// Thread (d, j) takes column d of splits j, j + SG, ...: the row's max over all splits through reduce.wgsl, then each
// thread's weighted sums, added over the SG split groups in workgroup memory.

override CW: u32 = 64u;            // columns a workgroup
override SG: u32 = 4u;             // split groups (WG = CW · SG)
override GATE_STRIDE: u32 = D;     // the gate of (row, d) sits at row·GATE_STRIDE + GATE_OFFSET + d of gate_in:
override GATE_OFFSET: u32 = 0u;    // attn_prep's gate (stride D), or one token's fused projection (stride 2D, offset D)

@group(0) @binding(1) var<storage, read> part_o_in: array<f32>;      // (n_split, T, HQ, D)
@group(0) @binding(2) var<storage, read> part_ml_in: array<vec2f>;   // (n_split, T, HQ)
@group(0) @binding(3) var<storage, read> gate_in: array<f32>;        // see GATE_STRIDE
@group(0) @binding(4) var<storage, read_write> out_c: array<f32>;    // (T, HQ*D)

var<workgroup> comb: array<vec2f, CW * SG>;

@compute @workgroup_size(WG)
fn attn_combine(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let col_blocks = (D + CW - 1u) / CW;
  let idx = flat_group(wg);
  let rows = p.T * HQ;
  if (idx >= rows * col_blocks) { return; }
  let row = idx / col_blocks;
  let d = (idx % col_blocks) * CW + lid % CW;
  let j = lid / CW;
  var m = NEG;
  for (var s = j; s < p.n_split; s += SG) { m = max(m, part_ml_in[s * rows + row].x); }
  m = workgroup_max(lid, m);
  var l = 0.0;
  var o = 0.0;
  for (var s = j; s < p.n_split; s += SG) {
    let ml = part_ml_in[s * rows + row];
    let w = exp(ml.x - m);
    l += w * ml.y;
    if (d < D) { o += w * part_o_in[(s * rows + row) * D + d]; }
  }
  comb[lid] = vec2f(o, l);
  workgroupBarrier();
  if (j == 0u && d < D) {
    var t = comb[lid];
    for (var g = 1u; g < SG; g++) { t += comb[g * CW + lid]; }
    out_c[row * D + d] = t.x / t.y * sigmoid(gate_in[row * GATE_STRIDE + GATE_OFFSET + d]);
  }
}

// ---- 3. attn_decode: one new token against the cache, attn_prep fused in (flash-decoding) ---------------------------
// Workgroup = (kv head g, split of split_len keys), one warp (team of TEAM lanes) per query head of g: G · TEAM
// threads. Each workgroup prepares what it reads itself from the fused projection: its G queries (q_norm, RoPE,
// D^-1/2) and the new key (k_norm, RoPE) and value at position pos0, which the split holding pos0 also writes into
// the caches. Then every warp streams the split's keys and values straight from the caches, KT keys at a time with
// all their loads issued before the first FMA and no barrier in the loop (the G warps read the same rows: the
// first brings them into L1 for the others). Lane i of a warp owns head dims [i·DPL, (i+1)·DPL): its slice of each
// key's dot product is summed over the team (reduce.wgsl), softmax is online in the warp, and the lane accumulates
// its slice of the values. attn_combine merges the splits and applies the gate straight from the projection.

override DPL4: u32 = D / TEAM / 4u; // head dims a lane, in vec4s (attention.ts picks TEAM so that D / TEAM is a multiple of 4)
const DMAX4 = 16u;                 // DPL4 <= DMAX4 (D <= 256, TEAM >= 4)
const KT = 4u;                     // keys a warp has in flight
const KV_MAX4 = 32u;               // KT · DPL4 <= KV_MAX4 (attention.ts picks TEAM so)

@group(0) @binding(1) var<storage, read> dq_qkv: array<f32>;               // (1, HQ*2D + 2*HKV*D) [q|gate per head][k][v]
@group(0) @binding(2) var<storage, read> dq_q_norm: array<f32>;            // (D)
@group(0) @binding(3) var<storage, read> dq_k_norm: array<f32>;            // (D)
@group(0) @binding(4) var<storage, read> dq_inv_freq: array<f32>;          // (R/2)
@group(0) @binding(5) var<storage, read_write> dq_k_cache: array<KvVec4>;  // (HKV, MAX_T, D / 4)
@group(0) @binding(6) var<storage, read_write> dq_v_cache: array<KvVec4>;  // (HKV, MAX_T, D / 4)
@group(0) @binding(7) var<storage, read_write> dq_part_o: array<f32>;      // (n_split, 1, HQ, D)
@group(0) @binding(8) var<storage, read_write> dq_part_ml: array<vec2f>;   // (n_split, 1, HQ)

var<workgroup> dq_rows: array<f32, (G + 2u) * D>;   // G queries, then the new key, then the new value

// The G queries and the new key normalised and rotated in dq_rows (rows 0..G), the new value in row G + 1.
fn decode_prep(g: u32, lid: u32) {
  let warp = lid / TEAM;
  let lane = lid % TEAM;
  let kv0 = HQ * 2u * D;
  for (var i = lid; i < (G + 2u) * D; i += WG) {
    let r = i / D;
    let c = i % D;
    var src = kv0 + HKV * D + g * D + c;                      // the value
    if (r < G) { src = (g * G + r) * 2u * D + c; }            // query of head g·G + r
    else if (r == G) { src = kv0 + g * D + c; }               // the key
    dq_rows[i] = dq_qkv[src];
  }
  workgroupBarrier();
  // rows 0..G: warp w normalises rows w and w + G (every warp two rounds: the reductions stay uniform)
  for (var round = 0u; round < 2u; round++) {
    let r = warp + round * G;
    var ss = 0.0;
    if (r <= G) { for (var c = lane; c < D; c += TEAM) { let v = dq_rows[r * D + c]; ss += v * v; } }
    let inv = inverseSqrt(team_sum(lid, ss) / f32(D) + EPS);
    if (r <= G) {
      for (var c = lane; c < D; c += TEAM) { dq_rows[r * D + c] *= inv * (1.0 + select(dq_k_norm[c], dq_q_norm[c], r < G)); }
    }
  }
  workgroupBarrier();
  // partial NeoX RoPE of rows 0..G at position pos0: element c < R/2 pairs with c + R/2
  let hr = R / 2u;
  for (var i = lid; i < (G + 1u) * hr; i += WG) {
    let r = i / hr;
    let c = i % hr;
    let cs = cos_sin(f32(p.pos0) * dq_inv_freq[c]) * ROPE_SCALE;
    let a = dq_rows[r * D + c];
    let b = dq_rows[r * D + c + hr];
    dq_rows[r * D + c] = a * cs.x - b * cs.y;
    dq_rows[r * D + c + hr] = b * cs.x + a * cs.y;
  }
  workgroupBarrier();
}

@compute @workgroup_size(WG)
fn attn_decode(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let idx = flat_group(wg);
  if (idx >= HKV * p.n_split) { return; }
  let g = idx % HKV;
  let split = idx / HKV;
  decode_prep(g, lid);
  let warp = lid / TEAM;              // query head g·G + warp
  let lane = lid % TEAM;
  let pos = p.pos0;
  let kbeg = split * p.split_len;
  let kend = min(kbeg + p.split_len, pos + 1u);
  if (kend == pos + 1u) {             // the split with the new position stores its key and value
    for (var c = lid; c < D / 2u; c += WG) {
      let o = (g * MAX_T + pos) * (D / 4u) + c % (D / 4u);
      let r = select(G + 1u, G, c < D / 4u) * D + 4u * (c % (D / 4u));
      let v = vec4f(dq_rows[r], dq_rows[r + 1u], dq_rows[r + 2u], dq_rows[r + 3u]);
      if (c < D / 4u) { dq_k_cache[o] = kv_store(v); } else { dq_v_cache[o] = kv_store(v); }
    }
  }
  let scale = inverseSqrt(f32(D));
  var q: array<vec4f, DMAX4>;
  var acc: array<vec4f, DMAX4>;
  let d0 = lane * DPL4 * 4u;          // this lane's first head dim
  for (var i = 0u; i < DPL4; i++) {
    let r = warp * D + d0 + 4u * i;
    q[i] = vec4f(dq_rows[r], dq_rows[r + 1u], dq_rows[r + 2u], dq_rows[r + 3u]) * scale;
    acc[i] = vec4f(0.0);
  }
  var m = NEG;
  var l = 0.0;
  for (var k0 = kbeg; k0 < kend; k0 += KT) {
    var kr: array<vec4f, KV_MAX4>;   // [j·DPL4 + i]: this lane's slice of key k0 + j
    var vr: array<vec4f, KV_MAX4>;
    for (var j = 0u; j < KT; j++) {
      let key = min(k0 + j, kend - 1u);   // past the split: a valid row, masked below
      for (var i = 0u; i < DPL4; i++) {
        if (key == pos) {   // this dispatch writes it: take it from the prepared rows, rounded as the cache stores it
          let r = d0 + 4u * i;
          kr[j * DPL4 + i] = kv_load(kv_store(vec4f(dq_rows[G * D + r], dq_rows[G * D + r + 1u], dq_rows[G * D + r + 2u], dq_rows[G * D + r + 3u])));
          vr[j * DPL4 + i] = kv_load(kv_store(vec4f(dq_rows[(G + 1u) * D + r], dq_rows[(G + 1u) * D + r + 1u], dq_rows[(G + 1u) * D + r + 2u], dq_rows[(G + 1u) * D + r + 3u])));
        } else {
          let o = (g * MAX_T + key) * (D / 4u) + d0 / 4u + i;
          kr[j * DPL4 + i] = kv_load(dq_k_cache[o]);
          vr[j * DPL4 + i] = kv_load(dq_v_cache[o]);
        }
      }
    }
    var sc: array<f32, KT>;
    var m_new = m;
    for (var j = 0u; j < KT; j++) {
      var dotp = 0.0;
      for (var i = 0u; i < DPL4; i++) { dotp += dot(q[i], kr[j * DPL4 + i]); }
      sc[j] = select(NEG, team_sum(lid, dotp), k0 + j < kend);
      m_new = max(m_new, sc[j]);
    }
    let alpha = exp(m - m_new);
    l *= alpha;
    for (var i = 0u; i < DPL4; i++) { acc[i] *= alpha; }
    for (var j = 0u; j < KT; j++) {
      let pj = select(0.0, exp(sc[j] - m_new), sc[j] > NEG);
      l += pj;
      for (var i = 0u; i < DPL4; i++) { acc[i] += pj * vr[j * DPL4 + i]; }
    }
    m = m_new;
  }
  let row = split * HQ + g * G + warp;
  for (var i = 0u; i < DPL4; i++) {
    for (var c = 0u; c < 4u; c++) { dq_part_o[row * D + d0 + 4u * i + c] = acc[i][c]; }
  }
  if (lane == 0u) { dq_part_ml[row] = vec2f(m, l); }
}
