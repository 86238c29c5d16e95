// Causal depthwise conv1d + SiLU of the Gated DeltaNet (REFERENCE.md §2.1 step 3, §2.4), continuing from a
// conv state that holds each channel's previous K-1 inputs (oldest first; vLLM/llama.cpp width, not HF's K).
//
// Thread layout: one thread per (channel, block of TB tokens). Adjacent threads take adjacent channels, so every
// load of a token row is coalesced; blocks of tokens run in parallel (a 4096-token prefill is 256 blocks).
// Each thread keeps a sliding window of K inputs in registers. Only the thread of token block 0 touches the
// state: it reads the old state as its history, and after its tokens it writes the new state (the last K-1
// inputs, which come from the old state when T < K-1). One reader/writer per channel means no race.
// SNAP (a speculative verify step, T <= TB): that thread also writes the state after each token but the last into
// `snaps`, so a rejected draft rolls back to any of them with a copy (src/model/speculative.ts).
#include "common.wgsl"

override CONV: u32;        // channels (conv_dim = 2*key_dim + value_dim)
override K: u32 = 4u;      // kernel width (<= KMAX)
override TB: u32 = 16u;    // tokens per thread (>= K-1)
override WG: u32 = 256u;   // channels per workgroup
override SNAP: bool = false;

const KMAX = 8u;

struct Params { T: u32, P: u32 }   // tokens; row stride of proj (its first CONV columns are the conv inputs)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> proj: array<f32>;         // (T, P) reads columns [0, CONV)
@group(0) @binding(2) var<storage, read> w: array<f32>;            // (CONV, K) HF conv1d.weight; tap K-1 = current token
@group(0) @binding(3) var<storage, read_write> state: array<f32>;  // (CONV, K-1) previous inputs, oldest first
@group(0) @binding(4) var<storage, read_write> y: array<f32>;      // (T, CONV) silu(conv)
@group(0) @binding(5) var<storage, read_write> snaps: array<f32>;  // (T-1, CONV, K-1) the state after token t (SNAP)

@compute @workgroup_size(WG)
fn causal_conv1d_silu(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let groups_c = (CONV + WG - 1u) / WG;
  let flat = flat_group(wg);
  let blk = flat / groups_c;
  let c = (flat % groups_c) * WG + l.x;
  let t0 = blk * TB;
  if (c >= CONV || t0 >= p.T) { return; }

  var taps: array<f32, KMAX>;
  for (var j = 0u; j < K; j++) { taps[j] = w[c * K + j]; }

  // win[0..K-2]: the K-1 inputs before token t0, oldest first.
  var win: array<f32, KMAX>;
  var old: array<f32, KMAX>;
  for (var j = 0u; j < K - 1u; j++) {
    if (blk == 0u) {
      old[j] = state[c * (K - 1u) + j];
      win[j] = old[j];
    } else {
      win[j] = proj[(t0 - (K - 1u) + j) * p.P + c];
    }
  }

  let t_end = min(t0 + TB, p.T);
  for (var t = t0; t < t_end; t++) {
    let x = proj[t * p.P + c];
    var s = taps[K - 1u] * x;
    for (var j = 0u; j < K - 1u; j++) { s += taps[j] * win[j]; }
    y[t * CONV + c] = silu(s);
    for (var j = 0u; j + 1u < K - 1u; j++) { win[j] = win[j + 1u]; }
    win[K - 2u] = x;
    if (SNAP && t + 1u < p.T) {
      for (var j = 0u; j < K - 1u; j++) { snaps[(t * CONV + c) * (K - 1u) + j] = win[j]; }
    }
  }

  // New state = inputs at times T-(K-1) .. T-1; negative times still come from the old state.
  if (blk == 0u) {
    for (var j = 0u; j < K - 1u; j++) {
      let tau = i32(p.T) - i32(K - 1u) + i32(j);
      var v: f32;
      if (tau >= 0) { v = proj[u32(tau) * p.P + c]; } else { v = old[u32(i32(K - 1u) + tau)]; }
      state[c * (K - 1u) + j] = v;
    }
  }
}
