// Gated DeltaNet chunked prefill (REFERENCE.md §2.3, the UT/WY form). Names follow HF's
// torch_chunk_gated_delta_rule: u is its `value` after the UT transform, v_new its `v_new`.
//
// Inputs as in gdn.wgsl: q̂, k̂ (T, HK, DK) at key heads (value head h reads key head h / (HV/HK)); v inside the
// conv output y (T, CONV) at column 2·HK·DK; g, beta (T, HV); state (HV, DK, DV) in HF order, read as the
// initial state and overwritten with the final one; o (T, HV, DV). DK and DV are multiples of 4 (vec4 I/O).
//
// Per value head and chunk of C = 64 tokens, γ = inclusive cumulative sum of g inside the chunk:
//   A[i,j]        = β_i (k̂_i·k̂_j) e^(γ_i−γ_j), j < i               strictly lower triangular
//   u             = (I + A)⁻¹ diag(β) V                            (C, DV)
//   k_cumdecay    = (I + A)⁻¹ diag(β e^γ) K̂                        (C, DK)
//   attn[i,j]     = (q̂_i·k̂_j) e^(γ_i−γ_j), j ≤ i                   (C, C) intra-chunk scores
//   v_new         = u − k_cumdecay · S                             (C, DV)
//   o             = e^γ ⊙ (Q̂ S) + attn · v_new
//   S             ← e^(γ_last) S + (K̂ ⊙ e^(γ_last−γ))ᵀ v_new
// Only γ and differences γ_i − γ_j with j ≤ i (≤ 0) are exponentiated. A partial last chunk just has fewer
// rows (n < C): skipping them is exactly what zero padding would do.
//
// Two dispatches, 256 threads per workgroup, at most 12.5 KiB of workgroup memory:
// 1. gdn_chunk_wy: one workgroup per (chunk, value head), all chunks at once (T = 4096, HV = 32: 2048
//    workgroups). (a) γ, β. (b) 16×16 threads each own a 4×4 tile of the C×C matrices and form A and attn in
//    one pass over DK (vec4 loads of k̂/q̂ rows, L1-resident); A goes to workgroup memory as a packed strict
//    lower triangle (8 KiB), attn to global scratch. (c) (I + A)X = B is solved by forward substitution with one
//    thread per right-hand-side column (DK + DV = 256 columns at the real shape): each thread walks its column
//    top to bottom (x_i = b_i − Σ_{j<i} A[i,j] x_j) reading A as broadcasts, so the solve needs no barriers.
//    (An explicit (I + A)⁻¹ by in-place row substitution, then a register-tiled matmul, measured 2.6x slower
//    on the H100: 3.4 vs 1.3 ms at T = 4096.) Writes k_cumdecay and u.
// 2. gdn_chunk_scan: one workgroup per (value head, BV = 16 state columns), 256 workgroups at the real shape,
//    walking the chunks in order with its state slice S[:, b0:b0+BV] (DK×BV, 8 KiB) in workgroup memory for
//    the whole sequence, plus v_new (C×BV, 4 KiB) and the chunk's decay factors. Per chunk: (a) γ, e^γ,
//    e^(γ_last−γ); (b) per (row, 4 columns): v_new = u − k_cumdecay·S and o = e^γ q̂·S from the chunk-start S;
//    (c) o += attn·v_new (the partial o goes through the output buffer and is re-read by the thread that wrote
//    it), and threads owning 4×4 blocks of S apply the state update.
//
// H100 (Dawn/Vulkan), HV = 32, DK = DV = 128, per layer: T = 4096: wy 1.30 ms (the column solve 1.0 ms of it) +
// scan 2.55 ms (state update ~1.5 ms, v_new/q̂·S ~0.5 ms); T = 1024: 1.02 ms for both. Next steps if it matters:
// stage k̂ slices through workgroup memory in the scan, or move o out of the scan (per-chunk states, FLA-style).
#include "common.wgsl"

override HK: u32;          // key heads
override HV: u32;          // value heads (a multiple of HK)
override DK: u32;          // key head dim
override DV: u32;          // value head dim
override BV: u32 = 16u;    // gdn_chunk_scan: state columns per workgroup (a multiple of 4 dividing DV)
override CONV: u32 = 2u * HK * DK + HV * DV;
override BQ: u32 = BV / 4u;

const C = 64u;             // chunk length
const WG = 256u;
const TILE = 4u;           // gdn_chunk_wy (b): each of 16×16 threads owns a TILE×TILE block of the C×C matrices

struct Params { T: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> query: array<vec4f>;             // (T, HK, DK/4) q̂
@group(0) @binding(2) var<storage, read> key: array<vec4f>;               // (T, HK, DK/4) k̂
@group(0) @binding(3) var<storage, read> g: array<f32>;                   // (T, HV)
// Scratch written by gdn_chunk_wy, read by gdn_chunk_scan (read_write in both so one buffer can hold all three).
@group(0) @binding(8) var<storage, read_write> attn: array<vec4f>;        // (T, HV, C/4), only quads with j ≤ i

var<workgroup> gam: array<f32, C>;             // γ_i; rows past n hold γ_(n−1)

/** Fill gam with γ of the chunk at token c0 for value head h: a parallel load, then one thread sums in order
 *  (the CPU reference's order, so γ never increases and every γ_i − γ_j with j ≤ i is ≤ 0). */
fn chunk_gamma(c0: u32, n: u32, h: u32, lid: u32) {
  if (lid < C) { gam[lid] = select(0.0, g[(min(c0 + lid, p.T - 1u)) * HV + h], lid < n); }
  workgroupBarrier();
  if (lid == 0u) {
    var acc = 0.0;
    for (var m = 0u; m < C; m++) { acc += gam[m]; gam[m] = acc; }
  }
  workgroupBarrier();
}

fn tri(i: u32, j: u32) -> u32 { return i * (i - 1u) / 2u + j; }   // packed strict lower triangle, j < i

// ---- 1. gdn_chunk_wy ----

@group(0) @binding(4) var<storage, read> y: array<f32>;                   // (T, CONV) v at column 2·HK·DK
@group(0) @binding(5) var<storage, read> beta: array<f32>;                // (T, HV)
@group(0) @binding(6) var<storage, read_write> k_cumdecay: array<f32>;    // (T, HV, DK)
@group(0) @binding(7) var<storage, read_write> u: array<f32>;             // (T, HV, DV)

var<workgroup> bet: array<f32, C>;
var<workgroup> a_tri: array<f32, C * (C - 1u) / 2u>;   // A[i, j] at tri(i, j)

@compute @workgroup_size(WG)
fn gdn_chunk_wy(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let flat = flat_group(wg);
  if (flat >= ((p.T + C - 1u) / C) * HV) { return; }
  let h = flat % HV;
  let kh = h / (HV / HK);
  let c0 = (flat / HV) * C;
  let n = min(C, p.T - c0);
  let lid = l.x;

  // (a)
  if (lid < n) { bet[lid] = beta[(c0 + lid) * HV + h]; }
  chunk_gamma(c0, n, h, lid);

  // (b) A and attn: thread (ti, tj) owns rows 4ti.., columns 4tj..; tiles above the diagonal are all zero.
  let ti = lid / 16u;
  let tj = lid % 16u;
  if (tj <= ti) {
    var kk: array<vec4f, TILE>;      // kk[r][s] = k̂_i·k̂_j, qk[r][s] = q̂_i·k̂_j
    var qk: array<vec4f, TILE>;
    for (var a4 = 0u; a4 < DK / 4u; a4++) {
      var kj: array<vec4f, TILE>;
      for (var s = 0u; s < TILE; s++) { kj[s] = key[(min(c0 + tj * TILE + s, p.T - 1u) * HK + kh) * (DK / 4u) + a4]; }
      for (var r = 0u; r < TILE; r++) {
        let row = (min(c0 + ti * TILE + r, p.T - 1u) * HK + kh) * (DK / 4u) + a4;   // rows past T: unused
        let ki = key[row];
        let qi = query[row];
        kk[r] += vec4f(dot(ki, kj[0]), dot(ki, kj[1]), dot(ki, kj[2]), dot(ki, kj[3]));
        qk[r] += vec4f(dot(qi, kj[0]), dot(qi, kj[1]), dot(qi, kj[2]), dot(qi, kj[3]));
      }
    }
    for (var r = 0u; r < TILE; r++) {
      let i = ti * TILE + r;
      var scores = vec4f(0.0);
      for (var s = 0u; s < TILE; s++) {
        let j = tj * TILE + s;
        if (i < n && j <= i) {
          let decay = exp(gam[i] - gam[j]);
          scores[s] = qk[r][s] * decay;
          if (j < i) { a_tri[tri(i, j)] = bet[i] * kk[r][s] * decay; }
        }
      }
      if (i < n) { attn[((c0 + i) * HV + h) * (C / 4u) + tj] = scores; }
    }
  }
  workgroupBarrier();

  // (c) forward substitution, one right-hand-side column per thread: columns [0, DK) give k_cumdecay
  // (b_i = β_i e^γ_i k̂_i), columns [DK, DK+DV) give u (b_i = β_i v_i).
  for (var col = lid; col < DK + DV; col += WG) {
    var x: array<f32, C>;
    for (var i = 0u; i < n; i++) {
      let t = c0 + i;
      var s: f32;
      if (col < DK) { s = bet[i] * exp(gam[i]) * key[(t * HK + kh) * (DK / 4u) + col / 4u][col % 4u]; }
      else { s = bet[i] * y[t * CONV + 2u * HK * DK + h * DV + col - DK]; }
      for (var j = 0u; j < i; j++) { s -= a_tri[tri(i, j)] * x[j]; }
      x[i] = s;
      if (col < DK) { k_cumdecay[(t * HV + h) * DK + col] = s; } else { u[(t * HV + h) * DV + col - DK] = s; }
    }
  }
}

// ---- 2. gdn_chunk_scan ----

@group(0) @binding(4) var<storage, read_write> state: array<f32>;         // (HV, DK, DV) initial in, final out
@group(0) @binding(5) var<storage, read_write> o: array<vec4f>;           // (T, HV, DV/4)
@group(0) @binding(6) var<storage, read_write> k_cumdecay4: array<vec4f>; // (T, HV, DK/4) gdn_chunk_wy's k_cumdecay
@group(0) @binding(7) var<storage, read_write> u4: array<vec4f>;          // (T, HV, DV/4) gdn_chunk_wy's u

var<workgroup> s_tile: array<vec4f, DK * BQ>;    // S[a, b0 + 4q ..+4] at a·BQ + q
var<workgroup> v_new: array<vec4f, C * BQ>;      // v_new[i, b0 + 4q ..+4] at i·BQ + q
var<workgroup> eg: array<f32, C>;                // e^γ_i
var<workgroup> dl: array<f32, C>;                // e^(γ_last − γ_i)

@compute @workgroup_size(WG)
fn gdn_chunk_scan(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let slices = DV / BV;
  let flat = flat_group(wg);
  if (flat >= HV * slices) { return; }
  let h = flat / slices;
  let kh = h / (HV / HK);
  let q0 = (flat % slices) * BQ;                  // first column quad of this slice
  let lid = l.x;

  for (var e = lid; e < DK * BQ; e += WG) {
    let s0 = (h * DK + e / BQ) * DV + 4u * (q0 + e % BQ);
    s_tile[e] = vec4f(state[s0], state[s0 + 1u], state[s0 + 2u], state[s0 + 3u]);
  }

  let n_chunks = (p.T + C - 1u) / C;
  for (var chunk = 0u; chunk < n_chunks; chunk++) {
    let c0 = chunk * C;
    let n = min(C, p.T - c0);

    // (a)
    chunk_gamma(c0, n, h, lid);
    if (lid < n) {
      eg[lid] = exp(gam[lid]);
      dl[lid] = exp(gam[n - 1u] - gam[lid]);
    }
    workgroupBarrier();

    // (b) per (row i, column quad q), from the chunk-start state
    for (var e = lid; e < n * BQ; e += WG) {
      let i = e / BQ;
      let q = e % BQ;
      let tv = (c0 + i) * HV + h;                 // (token, value head) row
      let qrow = ((c0 + i) * HK + kh) * (DK / 4u);
      var ws = vec4f(0.0);
      var qs = vec4f(0.0);
      for (var a4 = 0u; a4 < DK / 4u; a4++) {
        let w = k_cumdecay4[tv * (DK / 4u) + a4];
        let x = query[qrow + a4];
        for (var r = 0u; r < 4u; r++) {
          let srow = s_tile[(4u * a4 + r) * BQ + q];
          ws += w[r] * srow;
          qs += x[r] * srow;
        }
      }
      v_new[e] = u4[tv * (DV / 4u) + q0 + q] - ws;
      o[tv * (DV / 4u) + q0 + q] = eg[i] * qs;
    }
    workgroupBarrier();

    // (c) o += attn·v_new (causal: j ≤ i) ...
    for (var e = lid; e < n * BQ; e += WG) {
      let i = e / BQ;
      let q = e % BQ;
      let tv = (c0 + i) * HV + h;
      var acc = o[tv * (DV / 4u) + q0 + q];
      for (var j4 = 0u; j4 <= i / 4u; j4++) {
        let a = attn[tv * (C / 4u) + j4];
        for (var s = 0u; s < 4u; s++) {
          if (4u * j4 + s <= i) { acc += a[s] * v_new[(4u * j4 + s) * BQ + q]; }
        }
      }
      o[tv * (DV / 4u) + q0 + q] = acc;
    }
    // ... and S ← e^γ_last S + (K̂ ⊙ e^(γ_last−γ))ᵀ v_new, one 4×4 block of S per thread. On the H100 this loop
    // is ~60% of the kernel: 64 dependent steps each waiting on a k̂ load, with half the threads busy.
    let eg_last = eg[n - 1u];
    for (var e = lid; e < (DK / 4u) * BQ; e += WG) {
      let a = 4u * (e / BQ);
      let q = e % BQ;
      var s0 = eg_last * s_tile[a * BQ + q];
      var s1 = eg_last * s_tile[(a + 1u) * BQ + q];
      var s2 = eg_last * s_tile[(a + 2u) * BQ + q];
      var s3 = eg_last * s_tile[(a + 3u) * BQ + q];
      for (var i = 0u; i < n; i++) {
        let kd = dl[i] * key[((c0 + i) * HK + kh) * (DK / 4u) + a / 4u];
        let vn = v_new[i * BQ + q];
        s0 += kd.x * vn;
        s1 += kd.y * vn;
        s2 += kd.z * vn;
        s3 += kd.w * vn;
      }
      s_tile[a * BQ + q] = s0;
      s_tile[(a + 1u) * BQ + q] = s1;
      s_tile[(a + 2u) * BQ + q] = s2;
      s_tile[(a + 3u) * BQ + q] = s3;
    }
    workgroupBarrier();
  }

  for (var e = lid; e < DK * BQ; e += WG) {
    let s0 = (h * DK + e / BQ) * DV + 4u * (q0 + e % BQ);
    let v = s_tile[e];
    state[s0] = v.x;
    state[s0 + 1u] = v.y;
    state[s0 + 2u] = v.z;
    state[s0 + 3u] = v.w;
  }
}
