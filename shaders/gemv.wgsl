// Decode's y (T, N) = x (T, K) · Wᵀ for T <= 4 tokens, W (N, K) packed (quant.wgsl). Memory-bound: a team of TEAM
// lanes owns ROWS rows of the workgroup's tile and lane i streams units i, i + TEAM, ... of them (16 bytes each,
// consecutive lanes at consecutive addresses), two units of every row loaded before their dot products; team_sum
// (reduce.wgsl: subgroup shuffles where the device has them) adds the lanes. WG / TEAM teams a workgroup.
//
// The input rows can be built in workgroup memory first, so the norm before a projection is no dispatch of its own
// (entry points gemv_rmsnorm*, gemv_gated): a workgroup stages the rows of its TB tokens (the decode token; up to 4,
// though every workgroup then norms them all: measured slower than a separate norm for 2-4 rows, BENCHMARKS.md) and
// then takes tiles in turn.
//   rmsnorm  x = Qwen3NextRMSNorm(h + deltas)·(1 + norm_w). h is the residual stream as last written, the deltas
//            the mixer / MoE outputs not yet added to it: decode defers each residual add to the next reader, and
//            with WRITE_H the first workgroup of each token group stores h + deltas to h_out (not h's buffer).
//   gated    x = Qwen3NextRMSNormGated per head of GATE_D values: norm_w · x·rsqrt(mean(x²) + eps) · silu(z), the
//            GDN output norm, z of token t read from the fused projection at t·Z_STRIDE + Z_OFFSET + head·GATE_D.
// SWIGLU (any T): x rows are (2K) = [gate | up] and the input is silu(gate)·up (the shared expert's down_proj).
// gemv_rmsnorm_conv (T = TB = 1): the GDN in_proj, whose first CONV_CH outputs get the causal conv1d + SiLU (conv.wgsl)
// as they are stored.
#include "common.wgsl"
#include "quant.wgsl"
#include "reduce.wgsl"
#include "staged_row.wgsl"

override N: u32;                 // rows of W (out features)
override K: u32;                 // cols of W (in features)
override WG: u32 = 256u;
override TEAM: u32 = 32u;        // lanes a row (reduce.wgsl)
override ROWS: u32 = 1u;         // rows a team (<= 4)
override TB: u32 = 1u;           // tokens a workgroup (<= 4; TB·ROWS <= 16)
override SWIGLU: bool = false;
override EPS: f32 = 1e-6;
override DELTAS: u32 = 0u;       // rmsnorm: residual deltas added to h (0..2)
override WRITE_H: bool = false;  // rmsnorm: the first workgroup stores h + deltas to h_out
override GATE_D: u32 = 1u;       // gated: values a head
override Z_OFFSET: u32 = 0u;     // gated: z of head g starts at Z_OFFSET + g·GATE_D of a row of `z`
override Z_STRIDE: u32 = 0u;     // gated: floats between two tokens' rows of `z`

override GROUPS: u32 = 1u;       // prologue entries: workgroups a token group, each taking tiles g, g + GROUPS, ...
override STAGED: bool = true;    // whether the entry stages rows (the plain GEMV does not: no workgroup memory for them)
override TEAMS: u32 = WG / TEAM;
override TILE_ROWS: u32 = TEAMS * ROWS;
override UNITS: u32 = (K + UNIT_WEIGHTS - 1u) / UNIT_WEIGHTS;
override ROW4: u32 = UNITS * UNIT_WEIGHTS / 4u;   // one staged row in vec4s, zero-padded to whole units
override XS4: u32 = select(1u, TB * ROW4, STAGED);

struct Params { T: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4f>;          // (T, K), SWIGLU (T, 2K); rmsnorm: h
@group(0) @binding(2) var<storage, read> wq: array<vec4u>;         // W (N, K) packed as quant.wgsl
@group(0) @binding(3) var<storage, read_write> y: array<f32>;      // (T, N)
@group(0) @binding(4) var<storage, read> norm_w: array<f32>;       // rmsnorm: (K); gated: (GATE_D)
@group(0) @binding(5) var<storage, read> delta0: array<f32>;       // rmsnorm: (T, K) a pending residual delta; gated: z rows
@group(0) @binding(6) var<storage, read> delta1: array<f32>;       // rmsnorm: (T, K) a second one
@group(0) @binding(7) var<storage, read_write> h_out: array<f32>;  // rmsnorm with WRITE_H: (T, K) h + deltas

fn x_at(i: u32) -> f32 { return x[i >> 2u][i & 3u]; }

// x[row + k .. row + k + 3] of the x binding, zero past K.
fn x_global(row: u32, k: u32) -> vec4f {
  if (K % 4u == 0u && (row & 3u) == 0u) {
    if (k < K) { return x[(row + k) >> 2u]; }
    return vec4f(0.0);
  }
  var v = vec4f(0.0);
  for (var i = 0u; i < 4u; i++) {
    if (k + i < K) { v[i] = x_at(row + k + i); }
  }
  return v;
}

// Token t's input over unit u's columns into xc, and their sum. `staged`: from row t of xs (t counts from the
// workgroup's first token).
fn load_x(t: u32, u: u32, staged: bool, xc: ptr<function, array<vec4f, 8>>) -> f32 {
  var sx = 0.0;
  for (var j = 0u; j < UNIT_WEIGHTS / 4u; j++) {
    let k = u * UNIT_WEIGHTS + 4u * j;
    var v: vec4f;
    if (staged) {
      v = xs[t * ROW4 + staged_vec4(k)];
    } else if (SWIGLU) {
      let g = x_global(2u * K * t, k);
      v = g / (1.0 + exp(-g)) * x_global(2u * K * t + K, k);
    } else {
      v = x_global(K * t, k);
    }
    xc[j] = v;
    sx += dot(v, vec4f(1.0));
  }
  return sx;
}

// The workgroup's dot products: entry [t·ROWS + r] of the result is row tile·TILE_ROWS + team·ROWS + r for token
// t0 + t, summed over the team (every lane holds it). Loads of two units of all ROWS rows go out before their FMAs.
fn tile_dots(tile: u32, t0: u32, lid: u32, staged: bool) -> array<f32, 16> {
  let team = lid / TEAM;
  let lane = lid % TEAM;
  let n0 = tile * TILE_ROWS + team * ROWS;
  var acc: array<f32, 16>;
  for (var u0 = lane; u0 < UNITS; u0 += 2u * TEAM) {
    var wd: array<vec4u, 8>;   // [j·ROWS + r]
    var sm: array<vec2f, 8>;
    for (var j = 0u; j < 2u; j++) {
      let u = min(u0 + j * TEAM, UNITS - 1u);
      for (var r = 0u; r < ROWS; r++) {
        let w = Packed(0u, N, K);
        let n = min(n0 + r, N - 1u);   // rows past N repeat the last one and are never stored
        wd[j * ROWS + r] = unit_data(w, n, u);
        sm[j * ROWS + r] = unit_scale_min(w, n, u);
      }
    }
    for (var j = 0u; j < 2u; j++) {
      let u = u0 + j * TEAM;
      if (u >= UNITS) { break; }
      for (var t = 0u; t < TB; t++) {
        var xc: array<vec4f, 8>;
        let sx = load_x(select(min(t0 + t, p.T - 1u), t, staged), u, staged, &xc);   // staged rows past T repeat the last
        for (var r = 0u; r < ROWS; r++) { acc[t * ROWS + r] += unit_dot(wd[j * ROWS + r], sm[j * ROWS + r], &xc, sx); }
      }
    }
  }
  for (var i = 0u; i < TB * ROWS; i++) { acc[i] = team_sum(lid, acc[i]); }
  return acc;
}

// Stores of the tile for tokens t0 .. t0 + TB - 1: lane 0 of each team writes its rows.
fn store_tile(tile: u32, t0: u32, lid: u32, acc: array<f32, 16>) {
  if (lid % TEAM != 0u) { return; }
  let n0 = tile * TILE_ROWS + (lid / TEAM) * ROWS;
  for (var t = 0u; t < TB; t++) {
    for (var r = 0u; r < ROWS; r++) {
      if (n0 + r < N && t0 + t < p.T) { y[(t0 + t) * N + n0 + r] = acc[t * ROWS + r]; }
    }
  }
}

fn tiles() -> u32 { return (N + TILE_ROWS - 1u) / TILE_ROWS; }

@compute @workgroup_size(WG)
fn gemv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let flat = flat_group(wg);
  let tile = flat % tiles();
  let t0 = (flat / tiles()) * TB;   // workgroups of later tiles take the next TB tokens
  if (t0 >= p.T) { return; }
  store_tile(tile, t0, lid, tile_dots(tile, t0, lid, false));
}

// ---- prologues -------------------------------------------------------------------------------------------------
// Workgroup flat = tg·GROUPS + g stages the rows of tokens t0 = tg·TB .. t0 + TB - 1 (past T: the last row again,
// never stored) and takes tiles g, g + GROUPS, ...: it builds its rows once for several tiles.

fn prologue_group(flat: u32) -> u32 { return flat % GROUPS; }
fn prologue_t0(flat: u32) -> u32 { return (flat / GROUPS) * TB; }
fn staged_token(t0: u32, r: u32) -> u32 { return min(t0 + r, p.T - 1u); }

// The residual rows h + deltas into xs, in three steps so an entry binds only what it reads (WGSL counts every
// binding a function touches, and gemv_rmsnorm_conv must stay within 8 storage buffers). Each thread touches the
// same elements (k ≡ lid mod WG) in every step, so the steps need no barrier between them.

// xs = h, zero past K.
fn stage_h(lid: u32, t0: u32) {
  for (var r = 0u; r < TB; r++) {
    let t = staged_token(t0, r);
    for (var i = lid; i < ROW4 * 4u; i += WG) {
      var v = 0.0;
      if (i < K) { v = x_at(t * K + i); }
      xs[r * ROW4 + staged_vec4(i)][i % 4u] = v;
    }
  }
}

// xs += the first pending delta.
fn add_delta0(lid: u32, t0: u32) {
  if (DELTAS == 0u) { return; }
  for (var r = 0u; r < TB; r++) {
    let t = staged_token(t0, r);
    for (var i = lid; i < K; i += WG) { xs[r * ROW4 + staged_vec4(i)][i % 4u] += delta0[t * K + i]; }
  }
}

// xs += the second pending delta; the token group's first workgroup stores the sums to h_out when WRITE_H.
fn add_delta1_store_h(g: u32, lid: u32, t0: u32) {
  for (var r = 0u; r < TB; r++) {
    let t = staged_token(t0, r);
    for (var i = lid; i < K; i += WG) {
      let s = r * ROW4 + staged_vec4(i);
      if (DELTAS > 1u) { xs[s][i % 4u] += delta1[t * K + i]; }
      if (WRITE_H && g == 0u && t0 + r < p.T) { h_out[t * K + i] = xs[s][i % 4u]; }
    }
  }
}

fn rmsnorm_rows(lid: u32) {
  for (var r = 0u; r < TB; r++) { rmsnorm_staged(lid, K, r * ROW4); }
}

@compute @workgroup_size(WG)
fn gemv_rmsnorm(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let flat = flat_group(wg);
  let g = prologue_group(flat);
  let t0 = prologue_t0(flat);
  if (g >= tiles() || t0 >= p.T) { return; }
  stage_h(lid, t0);
  add_delta0(lid, t0);
  add_delta1_store_h(g, lid, t0);
  rmsnorm_rows(lid);
  for (var tile = g; tile < tiles(); tile += GROUPS) { store_tile(tile, t0, lid, tile_dots(tile, t0, lid, true)); }
}

// xs = Qwen3NextRMSNormGated(x, z) per head: team g takes heads g, g + TEAMS, ... of each row (every team the same
// number of rounds, so the reductions stay uniform).
fn stage_gated(lid: u32, t0: u32) {
  let team = lid / TEAM;
  let lane = lid % TEAM;
  let heads = K / GATE_D;
  for (var i = lid; i < XS4 * 4u; i += WG) { xs[i / 4u][i % 4u] = 0.0; }
  workgroupBarrier();
  for (var r = 0u; r < TB; r++) {
    let t = staged_token(t0, r);
    for (var round = 0u; round < (heads + TEAMS - 1u) / TEAMS; round++) {
      let hd = round * TEAMS + team;
      var ss = 0.0;
      if (hd < heads) {
        for (var i = lane; i < GATE_D; i += TEAM) { let v = x_at(t * K + hd * GATE_D + i); ss += v * v; }
      }
      let inv = inverseSqrt(team_sum(lid, ss) / f32(GATE_D) + EPS);
      if (hd < heads) {
        for (var i = lane; i < GATE_D; i += TEAM) {
          let k = hd * GATE_D + i;
          xs[r * ROW4 + staged_vec4(k)][k % 4u] = norm_w[i] * (x_at(t * K + k) * inv) * silu(delta0[t * Z_STRIDE + Z_OFFSET + k]);
        }
      }
    }
  }
  workgroupBarrier();
}

@compute @workgroup_size(WG)
fn gemv_gated(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let flat = flat_group(wg);
  let g = prologue_group(flat);
  let t0 = prologue_t0(flat);
  if (g >= tiles() || t0 >= p.T) { return; }
  stage_gated(lid, t0);
  for (var tile = g; tile < tiles(); tile += GROUPS) { store_tile(tile, t0, lid, tile_dots(tile, t0, lid, true)); }
}

// ---- gemv_rmsnorm_conv: the GDN in_proj of one token -----------------------------------------------------------

override CONV_CH: u32 = 0u;   // conv channels: the first outputs
override CONV_K: u32 = 4u;    // conv kernel width

@group(0) @binding(8) var<storage, read> conv_w: array<f32>;              // (CONV_CH, CONV_K) HF conv1d.weight
@group(0) @binding(9) var<storage, read_write> conv_state: array<f32>;    // (CONV_CH, CONV_K-1) previous inputs, oldest first
@group(0) @binding(10) var<storage, read_write> conv_y: array<f32>;       // (1, CONV_CH) silu(conv)

@compute @workgroup_size(WG)
fn gemv_rmsnorm_conv(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let flat = flat_group(wg);
  if (flat >= tiles()) { return; }
  stage_h(lid, 0u);
  add_delta0(lid, 0u);
  rmsnorm_rows(lid);
  for (var tile = flat; tile < tiles(); tile += GROUPS) {
    let acc = tile_dots(tile, 0u, lid, true);
    if (lid % TEAM == 0u) { store_conv(tile * TILE_ROWS + (lid / TEAM) * ROWS, acc); }
  }
}

// Rows n0 .. n0 + ROWS - 1 of the in_proj; the conv channels among them also go through the causal conv + SiLU.
fn store_conv(n0: u32, acc: array<f32, 16>) {
  for (var r = 0u; r < ROWS; r++) {
    let c = n0 + r;
    if (c >= N) { break; }
    let v = acc[r];
    y[c] = v;
    if (c < CONV_CH) {   // one token: this lane is the channel's only reader and writer
      let st = c * (CONV_K - 1u);
      var a = conv_w[c * CONV_K + CONV_K - 1u] * v;   // tap K-1: the current token, as conv.wgsl sums
      for (var j = 0u; j + 1u < CONV_K; j++) { a += conv_w[c * CONV_K + j] * conv_state[st + j]; }
      conv_y[c] = silu(a);
      for (var j = 0u; j + 2u < CONV_K; j++) { conv_state[st + j] = conv_state[st + j + 1u]; }
      conv_state[st + CONV_K - 2u] = v;
    }
  }
}
