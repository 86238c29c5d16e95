// MoE routing (REFERENCE.md §5): the router's top-k per token, and for prefill a counting sort of the (token, j)
// pairs by expert into the GEMM tile list that moe.wgsl's grouped GEMMs walk.
#include "common.wgsl"
#include "reduce.wgsl"
#include "topk.wgsl"

override E: u32 = 1u;            // routed experts
override TOPK: u32 = 1u;         // experts per token (k)
override NORM_TOPK: bool = true; // renormalise the k probabilities to sum 1
override TM: u32 = 32u;          // list entries (tokens) per GEMM tile (moe.ts passes it to both shaders)

override WG: u32 = 256u;         // threads of the router, scan and scatter
override TEAM: u32 = 32u;        // reduce.wgsl: lanes a team

struct Params { T: u32, max_tiles: u32 }

@group(0) @binding(0) var<uniform> p: Params;

// ---------------------------------------------------------------------------------------------------------
// Router: one workgroup per token, topk.wgsl's selection (decode fuses the same into moe.wgsl's gate/up GEMV).

@group(0) @binding(1) var<storage, read_write> top_idx_out: array<u32>;  // (T, k)
@group(0) @binding(2) var<storage, read_write> top_w_out: array<f32>;    // (T, k)
@group(0) @binding(3) var<storage, read> router_logits: array<f32>;      // (T, E+1): router | shared gate

@compute @workgroup_size(WG)
fn router_topk(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = flat_group(wg);
  if (t >= p.T) { return; }
  route_topk(lid, t * (E + 1u));
  if (lid < TOPK) {
    top_idx_out[t * TOPK + lid] = topk_idx[lid];
    top_w_out[t * TOPK + lid] = topk_w[lid];
  }
}

// ---------------------------------------------------------------------------------------------------------
// Prefill grouping: a counting sort of the T·k pairs by expert, deterministic (list order = token order).
// Tokens come in blocks of 64; a token picks an expert at most once, so per block a 64-bit mask per expert
// gives both the block's count (popcount) and each pair's rank inside the block (popcount of lower bits).

const BLOCK = 64u;

// moe_count
@group(0) @binding(1) var<storage, read> top_idx: array<u32>;                  // (T, k)
@group(0) @binding(2) var<storage, read_write> block_counts_out: array<u32>;   // (ceil(T/64), E) pairs per block and expert
@group(0) @binding(3) var<storage, read_write> rank_out: array<u32>;           // (T, k) rank inside its block and expert
// moe_scan
@group(0) @binding(1) var<storage, read_write> tiles_out: array<vec4u>;        // (max_tiles): (expert, first entry, entries, 0)
@group(0) @binding(2) var<storage, read> block_counts: array<u32>;             // (ceil(T/64), E)
@group(0) @binding(3) var<storage, read_write> block_base_out: array<u32>;     // (ceil(T/64), E) list position of the block's first pair
// moe_scatter (and top_idx)
@group(0) @binding(2) var<storage, read> block_base: array<u32>;               // (ceil(T/64), E)
@group(0) @binding(3) var<storage, read> rank: array<u32>;                     // (T, k)
@group(0) @binding(4) var<storage, read_write> sorted_out: array<u32>;         // (T·k) pair ids grouped by expert

var<workgroup> mask_lo: array<atomic<u32>, E>;
var<workgroup> mask_hi: array<atomic<u32>, E>;

@compute @workgroup_size(BLOCK)
fn moe_count(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let b = flat_group(wg);
  if (b * BLOCK >= p.T) { return; }
  for (var e = lid; e < E; e += BLOCK) { atomicStore(&mask_lo[e], 0u); atomicStore(&mask_hi[e], 0u); }
  workgroupBarrier();
  let t = b * BLOCK + lid;
  let bit = 1u << (lid % 32u);
  if (t < p.T) {
    for (var j = 0u; j < TOPK; j++) {
      let e = top_idx[t * TOPK + j];
      if (lid < 32u) { atomicOr(&mask_lo[e], bit); } else { atomicOr(&mask_hi[e], bit); }
    }
  }
  workgroupBarrier();
  for (var e = lid; e < E; e += BLOCK) {
    block_counts_out[b * E + e] = countOneBits(atomicLoad(&mask_lo[e])) + countOneBits(atomicLoad(&mask_hi[e]));
  }
  if (t < p.T) {
    for (var j = 0u; j < TOPK; j++) {
      let e = top_idx[t * TOPK + j];
      let lo = atomicLoad(&mask_lo[e]);
      let hi = atomicLoad(&mask_hi[e]);
      var r = countOneBits(lo & (bit - 1u));
      if (lid >= 32u) { r = countOneBits(lo) + countOneBits(hi & (bit - 1u)); }
      rank_out[t * TOPK + j] = r;
    }
  }
}

var<workgroup> cnt: array<u32, E>;
var<workgroup> scan: array<vec2u, WG>;

// One workgroup: expert list offsets (exclusive scan of the counts), each block's start inside each list,
// and the GEMM tile list (TM entries per tile, experts in order), padded with empty tiles to max_tiles.
@compute @workgroup_size(WG)
fn moe_scan(@builtin(local_invocation_index) lid: u32) {
  let blocks = (p.T + BLOCK - 1u) / BLOCK;
  for (var e = lid; e < E; e += WG) {
    var s = 0u;
    for (var b = 0u; b < blocks; b++) { s += block_counts[b * E + e]; }
    cnt[e] = s;
  }
  workgroupBarrier();
  // Thread lid owns experts [e0, e0 + per): its (entries, tiles) total, then a Hillis-Steele scan over threads.
  let per = (E + WG - 1u) / WG;
  let e0 = lid * per;
  var own = vec2u(0u);
  for (var e = e0; e < min(e0 + per, E); e++) { own += vec2u(cnt[e], (cnt[e] + TM - 1u) / TM); }
  scan[lid] = own;
  workgroupBarrier();
  for (var s = 1u; s < WG; s <<= 1u) {
    var v = vec2u(0u);
    if (lid >= s) { v = scan[lid - s]; }
    workgroupBarrier();
    scan[lid] += v;
    workgroupBarrier();
  }
  var off = scan[lid] - own;  // (first list entry, first tile) of expert e0
  for (var e = e0; e < min(e0 + per, E); e++) {
    var r = off.x;
    for (var b = 0u; b < blocks; b++) {
      block_base_out[b * E + e] = r;
      r += block_counts[b * E + e];
    }
    let n = cnt[e];
    for (var q = 0u; q * TM < n; q++) { tiles_out[off.y + q] = vec4u(e, off.x + q * TM, min(TM, n - q * TM), 0u); }
    off += vec2u(n, (n + TM - 1u) / TM);
  }
  for (var i = scan[WG - 1u].y + lid; i < p.max_tiles; i += WG) { tiles_out[i] = vec4u(0u); }
}

// sorted[list position] = pair id.
@compute @workgroup_size(WG)
fn moe_scatter(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = flat_group(wg) * WG + lid;
  if (i >= p.T * TOPK) { return; }
  let t = i / TOPK;
  sorted_out[block_base[(t / BLOCK) * E + top_idx[i]] + rank[i]] = i;
}
