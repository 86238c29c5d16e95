// y (T, N) = x (T, K) · Wᵀ, W (N, K) in a storage format of quant.wgsl.
//   gemv: decode-sized T. Bandwidth-bound: a team of TPR lanes streams one row in 16-byte units (lane i reads
//         units i, i+TPR, ...: consecutive lanes, consecutive addresses), a workgroup sum adds the lanes.
//   gemm: prefill. 64x64 output tiles, k-tiles of 32 (= one quant group), x and dequantised W staged in
//         workgroup memory, 4x4 outputs per thread.
#include "common.wgsl"
#include "quant.wgsl"

override FORMAT: u32;   // 0 f32, 1 f16, 2 q4, 3 q8
override N: u32;        // rows of W (out features)
override K: u32;        // cols of W (in features)

const F32 = 0u;
const F16 = 1u;
const Q4 = 2u;
const Q8 = 3u;

override G: u32 = (K + 31u) / 32u;     // quant groups per row
override K2: u32 = (K + 1u) / 2u;      // f16 words per row
// A unit is 4 data words: 4 weights of f32, 8 of f16, 16 of q8, 32 (one group) of q4. Unit u starts at k = u·UE.
override UE: u32 = select(select(select(4u, 8u, FORMAT == F16), 32u, FORMAT == Q4), 16u, FORMAT == Q8);
override UNITS: u32 = (K + UE - 1u) / UE;
// f32/f16 rows start on a 16-byte boundary only when their word count is a multiple of 4 (q4/q8 always do).
override W_ALIGNED: bool = (FORMAT == F32 && K % 4u == 0u) || (FORMAT == F16 && K2 % 4u == 0u) || FORMAT >= Q4;

struct Params {
  T: u32,
  token_blocks: u32,   // gemv: ceil(T / TB)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4f>;       // (T, K) f32, rows packed back to back; SWIGLU: (T, 2K)
@group(0) @binding(2) var<storage, read> w: array<vec4u>;       // W (N, K) packed as quant.wgsl
@group(0) @binding(3) var<storage, read_write> y: array<f32>;   // (T, N)

fn word(i: u32) -> u32 { return w[i >> 2u][i & 3u]; }

fn x_at(i: u32) -> f32 { return x[i >> 2u][i & 3u]; }

// The shared expert's down_proj reads its SwiGLU on the fly: x rows are (2K) = [gate | up] and the input is
// silu(gate) · up (one dispatch fewer a layer than a separate silu_mul).
override SWIGLU: bool = false;

// x[base + k .. base + k+3] (k a multiple of 4), zero past K.
fn x_part(base: u32, k: u32) -> vec4f {
  if (K % 4u == 0u && k < K) { return x[(base + k) >> 2u]; }
  var v = vec4f(0.0);
  for (var i = 0u; i < 4u; i++) {
    if (k + i < K) { v[i] = x_at(base + k + i); }
  }
  return v;
}

// The input row t at k .. k+3.
fn x_vec4(t: u32, k: u32) -> vec4f {
  if (SWIGLU) {
    let g = x_part(2u * K * t, k);
    return g / (1.0 + exp(-g)) * x_part(2u * K * t + K, k);
  }
  return x_part(K * t, k);
}

fn store(i: u32, v: f32) { y[i] = v; }

// ---- gemv -------------------------------------------------------------------------------------------------

override TPR: u32 = 32u;    // lanes per row team
override TEAMS: u32 = 8u;   // row teams per workgroup
override RPT: u32 = 1u;     // rows per team (<= 8): each x chunk is reused for RPT rows
override TB: u32 = 1u;      // tokens per workgroup (<= 4, TB·RPT <= 16): each weight unit is reused for TB tokens

var<workgroup> lanes: array<f32, TPR * TEAMS * RPT * TB>;   // [lane][output]

// The 4 data words of unit u of row n; words past the end of an unaligned f32/f16 row read as 0.
fn unit_words(n: u32, u: u32) -> vec4u {
  switch FORMAT {
    case Q4: { return w[n * G + u]; }
    case Q8: { return w[n * 2u * G + u]; }
    default: {
      let row_words = select(K2, K, FORMAT == F32);
      let b = n * row_words + 4u * u;
      if (W_ALIGNED) { return w[b >> 2u]; }
      var v = vec4u(0u);
      for (var i = 0u; i < 4u; i++) {
        if (4u * u + i < row_words) { v[i] = word(b + i); }
      }
      return v;
    }
  }
}

// (scale, min) of the group holding unit u of row n; (1, 0) for f32/f16.
fn unit_scale_min(n: u32, u: u32) -> vec2f {
  if (FORMAT == Q4) { return q_scale_min(word(N * G * 4u + n * G + u)); }
  if (FORMAT == Q8) { return q_scale_min(word(N * G * 8u + n * G + u / 2u)); }
  return vec2f(1.0, 0.0);
}

// Σ w·x over one unit: xc holds x over the unit's UE columns, sx their sum. A quantized unit shares one
// (scale, min): Σ (q·scale + min)·x = scale·Σ q·x + min·Σ x.
fn unit_dot(wd: vec4u, sm: vec2f, xc: ptr<function, array<vec4f, 8>>, sx: f32) -> f32 {
  switch FORMAT {
    case F32: { return dot(bitcast<vec4f>(wd), xc[0]); }
    case F16: {
      return dot(vec4f(unpack2x16float(wd.x), unpack2x16float(wd.y)), xc[0])
           + dot(vec4f(unpack2x16float(wd.z), unpack2x16float(wd.w)), xc[1]);
    }
    case Q4: {
      var s = 0.0;
      for (var i = 0u; i < 4u; i++) { s += dot(q4_lo(wd[i]), xc[2u * i]) + dot(q4_hi(wd[i]), xc[2u * i + 1u]); }
      return s * sm.x + sm.y * sx;
    }
    default: {
      var s = 0.0;
      for (var i = 0u; i < 4u; i++) { s += dot(q8_unpack(wd[i]), xc[i]); }
      return s * sm.x + sm.y * sx;
    }
  }
}

// Where workgroup `flat` starts: its first row and first token.
fn gemv_origin(flat: u32) -> vec2u {
  let rows = TEAMS * RPT;                 // rows per workgroup
  let row_blocks = (N + rows - 1u) / rows;
  return vec2u((flat % row_blocks) * rows, (flat / row_blocks) * TB);
}

override OUTS: u32 = TB * RPT * TEAMS;     // outputs per workgroup

// The workgroup's dot products, left as per-lane partials in `lanes` (then a barrier); false for a workgroup past
// the grid (uniform per workgroup).
fn gemv_lanes(flat: u32, lid: u32) -> bool {
  let rows = TEAMS * RPT;
  if (flat >= (N + rows - 1u) / rows * p.token_blocks) { return false; }
  let origin = gemv_origin(flat);
  let n0 = origin.x;
  let t0 = origin.y;
  let team = lid / TPR;
  let lane = lid % TPR;

  var acc: array<f32, 16>;                // [token][row] of this lane, TB·RPT <= 16
  for (var u = lane; u < UNITS; u += TPR) {
    var wd: array<vec4u, 8>;
    var sm: array<vec2f, 8>;
    for (var r = 0u; r < RPT; r++) {
      let n = min(n0 + team * RPT + r, N - 1u);    // rows past N repeat the last one and are never stored
      wd[r] = unit_words(n, u);
      sm[r] = unit_scale_min(n, u);
    }
    for (var tt = 0u; tt < TB; tt++) {
      let t = min(t0 + tt, p.T - 1u);
      var xc: array<vec4f, 8>;
      var sx = 0.0;
      for (var j = 0u; j < UE / 4u; j++) {
        xc[j] = x_vec4(t, u * UE + 4u * j);
        sx += dot(xc[j], vec4f(1.0));
      }
      for (var r = 0u; r < RPT; r++) { acc[tt * RPT + r] += unit_dot(wd[r], sm[r], &xc, sx); }
    }
  }

  // output o = (tt·RPT + r)·TEAMS + team
  for (var tt = 0u; tt < TB; tt++) {
    for (var r = 0u; r < RPT; r++) { lanes[lane * OUTS + (tt * RPT + r) * TEAMS + team] = acc[tt * RPT + r]; }
  }
  workgroupBarrier();
  return true;
}

// Output o of the workgroup: (row, token, the sum of its team's lanes).
struct Out { n: u32, t: u32, s: f32 }

fn gemv_out(flat: u32, o: u32) -> Out {
  var s = 0.0;
  for (var l = 0u; l < TPR; l++) { s += lanes[l * OUTS + o]; }
  let origin = gemv_origin(flat);
  return Out(origin.x + (o % TEAMS) * RPT + (o / TEAMS) % RPT, origin.y + o / (TEAMS * RPT), s);
}

@compute @workgroup_size(TPR * TEAMS)
fn gemv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let flat = wg.x + wg.y * 65535u;
  if (!gemv_lanes(flat, lid)) { return; }
  for (var o = lid; o < OUTS; o += TPR * TEAMS) {
    let r = gemv_out(flat, o);
    if (r.n < N && r.t < p.T) { store(r.t * N + r.n, r.s); }
  }
}

// ---- gemv_conv: decode's GDN in_proj with the causal conv1d + SiLU (conv.wgsl) of its first CONV_CH outputs
// applied by the thread that stores each one (T = 1 only: a channel's state then has one reader and writer).

override CONV_CH: u32 = 0u;   // conv channels (the first outputs of each row)
override CONV_K: u32 = 4u;    // conv kernel width

@group(0) @binding(4) var<storage, read> conv_w: array<f32>;              // (CONV_CH, CONV_K) HF conv1d.weight
@group(0) @binding(5) var<storage, read_write> conv_state: array<f32>;    // (CONV_CH, CONV_K-1) previous inputs, oldest first
@group(0) @binding(6) var<storage, read_write> conv_y: array<f32>;        // (1, CONV_CH) silu(conv)

@compute @workgroup_size(TPR * TEAMS)
fn gemv_conv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let flat = wg.x + wg.y * 65535u;
  if (!gemv_lanes(flat, lid)) { return; }
  for (var o = lid; o < OUTS; o += TPR * TEAMS) {
    let r = gemv_out(flat, o);
    if (r.n >= N || r.t >= p.T) { continue; }
    store(r.n, r.s);
    if (r.n < CONV_CH) {
      let c = r.n;
      let st = c * (CONV_K - 1u);
      var acc = conv_w[c * CONV_K + CONV_K - 1u] * r.s;   // tap K-1: the current token, as conv.wgsl sums
      for (var j = 0u; j + 1u < CONV_K; j++) { acc += conv_w[c * CONV_K + j] * conv_state[st + j]; }
      conv_y[c] = silu(acc);
      for (var j = 0u; j + 2u < CONV_K; j++) { conv_state[st + j] = conv_state[st + j + 1u]; }
      conv_state[st + CONV_K - 2u] = r.s;
    }
  }
}

// ---- gemm -------------------------------------------------------------------------------------------------

const BM = 64u;   // tokens per tile
const BN = 64u;   // rows of W per tile
const BK = 32u;   // k per tile: one quant group

var<workgroup> xs: array<vec4f, BK * BM / 4u>;   // [k][m / 4]
var<workgroup> ws: array<vec4f, BK * BN / 4u>;   // [k][n / 4], dequantised

// W[n, k0 + 8c .. k0 + 8c + 7] (k0 a multiple of 32, c < 4), zero past K.
fn w_eight(n: u32, k0: u32, c: u32) -> array<vec4f, 2> {
  var lo: vec4f;
  var hi: vec4f;
  switch FORMAT {
    case Q4: {
      let g = n * G + k0 / 32u;
      let sm = q_scale_min(word(N * G * 4u + g));
      let wd = word(g * 4u + c);
      lo = q4_lo(wd) * sm.x + sm.y;
      hi = q4_hi(wd) * sm.x + sm.y;
    }
    case Q8: {
      let g = n * G + k0 / 32u;
      let sm = q_scale_min(word(N * G * 8u + g));
      lo = q8_unpack(word(g * 8u + 2u * c)) * sm.x + sm.y;
      hi = q8_unpack(word(g * 8u + 2u * c + 1u)) * sm.x + sm.y;
    }
    case F16: {
      let j = k0 / 2u + 4u * c;               // word within the row
      var wd: vec4u;
      if (W_ALIGNED) { wd = w[(n * K2 + j) >> 2u]; } else {
        for (var i = 0u; i < 4u; i++) { wd[i] = select(0u, word(n * K2 + j + i), j + i < K2); }
      }
      lo = vec4f(unpack2x16float(wd.x), unpack2x16float(wd.y));
      hi = vec4f(unpack2x16float(wd.z), unpack2x16float(wd.w));
    }
    default: {
      let j = k0 + 8u * c;
      if (W_ALIGNED && j < K) {
        lo = bitcast<vec4f>(w[(n * K + j) >> 2u]);
        hi = bitcast<vec4f>(w[(n * K + j + 4u) >> 2u]);
      } else {
        for (var i = 0u; i < 4u; i++) {
          lo[i] = bitcast<f32>(select(0u, word(n * K + j + i), j + i < K));
          hi[i] = bitcast<f32>(select(0u, word(n * K + j + 4u + i), j + 4u + i < K));
        }
      }
    }
  }
  let k = k0 + 8u * c;
  if (k + 8u > K) {   // tail group: padding columns must contribute exactly 0
    for (var i = 0u; i < 4u; i++) {
      lo[i] = select(0.0, lo[i], k + i < K);
      hi[i] = select(0.0, hi[i], k + 4u + i < K);
    }
  }
  return array<vec4f, 2>(lo, hi);
}

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n0 = wg.x * BN;
  let m0 = wg.y * BM;
  // loaders: thread lid fills column (lid % 64) of both tiles, k = 8c .. 8c+7
  let lm = lid % 64u;
  let c = lid / 64u;
  let t = m0 + lm;
  let n = min(n0 + lm, N - 1u);   // rows past N load the last row; their outputs are never stored

  var acc: array<vec4f, 4>;        // acc[i][j]: token m0 + 4·l.y + i, row n0 + 4·l.x + j
  for (var k0 = 0u; k0 < K; k0 += BK) {
    var xa = vec4f(0.0);
    var xb = vec4f(0.0);
    if (t < p.T) {
      xa = x_vec4(t, k0 + 8u * c);
      xb = x_vec4(t, k0 + 8u * c + 4u);
    }
    let we = w_eight(n, k0, c);
    for (var i = 0u; i < 4u; i++) {
      xs[(8u * c + i) * 16u + lm / 4u][lm % 4u] = xa[i];
      xs[(8u * c + 4u + i) * 16u + lm / 4u][lm % 4u] = xb[i];
      ws[(8u * c + i) * 16u + lm / 4u][lm % 4u] = we[0][i];
      ws[(8u * c + 4u + i) * 16u + lm / 4u][lm % 4u] = we[1][i];
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
      let a = xs[k * 16u + l.y];
      let b = ws[k * 16u + l.x];
      acc[0] += a.x * b;
      acc[1] += a.y * b;
      acc[2] += a.z * b;
      acc[3] += a.w * b;
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < 4u; i++) {
    let m = m0 + 4u * l.y + i;
    for (var j = 0u; j < 4u; j++) {
      let nn = n0 + 4u * l.x + j;
      if (m < p.T && nn < N) { store(m * N + nn, acc[i][j]); }
    }
  }
}
