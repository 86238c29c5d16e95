// The router's choice for one token (REFERENCE.md §5): softmax over the E router logits in f32, then the TOPK most
// probable experts in torch.topk's order (probability descending, the lower index first on ties), their
// probabilities renormalised to sum 1 when NORM_TOPK. Into workgroup memory: topk_idx, topk_w.
//
// Selection without sorting all E: the probabilities are binned by the top bits of their f32 pattern (monotone in
// the value; a bin is 1/16 octave, counted down from the largest, 8 octaves, the last bin catching the rest), a
// prefix sum over the bins finds the smallest set of whole bins holding at least TOPK experts, those become the
// candidates (ties are never split: equal values share a bin), and only the candidates rank themselves against each
// other. Usually a few dozen candidates; equal logits everywhere leave all E (still right, just slower).
//
// The includer declares `override E`, `override TOPK`, `override NORM_TOPK: bool`, WG >= TOPK_BINS and TEAM
// (reduce.wgsl), and the logits binding `router_logits: array<f32>` ((T, E + 1): router | shared gate). Call in
// uniform control flow.

const TOPK_BINS = 128u;

var<workgroup> topk_idx: array<u32, TOPK>;
var<workgroup> topk_w: array<f32, TOPK>;
var<workgroup> topk_prob: array<f32, E>;
var<workgroup> topk_hist: array<atomic<u32>, TOPK_BINS>;
var<workgroup> topk_scan: array<u32, TOPK_BINS>;     // running counts over the bins
var<workgroup> topk_cut: u32;                        // the last bin of the candidates
var<workgroup> topk_count: atomic<u32>;              // candidates
var<workgroup> topk_cand: array<u32, E>;             // candidate expert ids, in no particular order

// Bin of probability `v` against the largest probability `top`: 1/16 octaves, the last bin catches the rest.
fn topk_bin(v: f32, top: f32) -> u32 {
  return min(TOPK_BINS - 1u, (bitcast<u32>(top) >> 19u) - (bitcast<u32>(v) >> 19u));
}

// Whether expert a ranks before expert b.
fn topk_before(a: u32, b: u32) -> bool {
  let pa = topk_prob[a];
  let pb = topk_prob[b];
  return pa > pb || (pa == pb && a < b);
}

fn route_topk(lid: u32, row: u32) {
  for (var b = lid; b < TOPK_BINS; b += WG) { atomicStore(&topk_hist[b], 0u); }
  if (lid == 0u) { atomicStore(&topk_count, 0u); }
  var m = -3.4e38;
  for (var e = lid; e < E; e += WG) { m = max(m, router_logits[row + e]); }
  m = workgroup_max(lid, m);
  var s = 0.0;
  for (var e = lid; e < E; e += WG) { s += exp(router_logits[row + e] - m); }
  s = workgroup_sum(lid, s);
  // torch's softmax: exp(x - max) / sum; the largest is exp(0) / sum
  let top = 1.0 / s;
  for (var e = lid; e < E; e += WG) {
    let v = exp(router_logits[row + e] - m) / s;
    topk_prob[e] = v;
    atomicAdd(&topk_hist[topk_bin(v, top)], 1u);
  }
  workgroupBarrier();
  // the first bin whose running count reaches TOPK: an inclusive scan over the bins (Hillis-Steele)
  if (lid < TOPK_BINS) { topk_scan[lid] = atomicLoad(&topk_hist[lid]); }
  workgroupBarrier();
  for (var o = 1u; o < TOPK_BINS; o <<= 1u) {
    var add = 0u;
    if (lid < TOPK_BINS && lid >= o) { add = topk_scan[lid - o]; }
    workgroupBarrier();
    if (lid < TOPK_BINS) { topk_scan[lid] += add; }
    workgroupBarrier();
  }
  if (lid < TOPK_BINS && topk_scan[lid] >= TOPK && (lid == 0u || topk_scan[lid - 1u] < TOPK)) { topk_cut = lid; }
  workgroupBarrier();
  let cut = topk_cut;
  for (var e = lid; e < E; e += WG) {
    if (topk_bin(topk_prob[e], top) <= cut) { topk_cand[atomicAdd(&topk_count, 1u)] = e; }
  }
  workgroupBarrier();
  let n = atomicLoad(&topk_count);
  for (var i = lid; i < n; i += WG) {
    let e = topk_cand[i];
    var r = 0u;
    for (var j = 0u; j < n && r < TOPK; j++) {
      if (topk_before(topk_cand[j], e)) { r++; }
    }
    if (r < TOPK) {
      topk_idx[r] = e;
      topk_w[r] = topk_prob[e];
    }
  }
  workgroupBarrier();
  // renormalise in rank order (torch sums the sorted top-k); every thread computes the same
  var sum = 0.0;
  for (var j = 0u; j < TOPK; j++) { sum += topk_w[j]; }
  workgroupBarrier();
  if (NORM_TOPK && lid < TOPK) { topk_w[lid] = topk_w[lid] / sum; }
  workgroupBarrier();
}
