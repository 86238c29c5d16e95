// The router's choice for one token (REFERENCE.md §5): softmax over the E router logits in f32, then the TOPK most
// probable experts in torch.topk's order (probability descending, the lower index first on ties), their
// probabilities renormalised to sum 1 when NORM_TOPK. Into workgroup memory: topk_idx, topk_w.
//
// Selection: TOPK rounds of argmax. Every team of TEAM lanes (reduce.wgsl) runs them on its own over the staged
// probabilities and reaches the same answer, so no round needs a workgroup barrier: a lane holds experts
// lane, lane + TEAM, ... and a bit an expert for those already taken; a round is one pass over the lane's experts and
// two team reductions (the largest probability, then the lowest index holding it). The cost, TOPK · (E / TEAM + 2
// reductions), does not depend on how the probabilities are spread (a cut by value bins degrades to E² when the
// k-th largest lies far below the largest, as it does for logits of a wide range).
//
// The includer declares `override E`, `override TOPK`, `override NORM_TOPK: bool`, WG and TEAM (reduce.wgsl;
// E <= 32·TOPK_MASKS·TEAM, moe.ts checks) and the logits binding `router_logits: array<f32>` ((T, E + 1): router | shared
// gate). Call in uniform control flow.

const TOPK_MASKS = 4u;   // u32 words of a lane's taken bits

var<workgroup> topk_idx: array<u32, TOPK>;
var<workgroup> topk_w: array<f32, TOPK>;
var<workgroup> topk_prob: array<f32, E>;

fn route_topk(lid: u32, row: u32) {
  var m = -3.4e38;
  for (var e = lid; e < E; e += WG) { m = max(m, router_logits[row + e]); }
  m = workgroup_max(lid, m);
  var s = 0.0;
  for (var e = lid; e < E; e += WG) { s += exp(router_logits[row + e] - m); }
  s = workgroup_sum(lid, s);
  // torch's softmax: exp(x - max) / sum
  for (var e = lid; e < E; e += WG) { topk_prob[e] = exp(router_logits[row + e] - m) / s; }
  workgroupBarrier();
  let lane = lid % TEAM;
  var taken: array<u32, TOPK_MASKS>;   // bit i: expert i·TEAM + lane is chosen (indexed by loop counters only: registers)
  for (var w = 0u; w < TOPK_MASKS; w++) { taken[w] = 0u; }
  var sum = 0.0;
  for (var r = 0u; r < TOPK; r++) {
    var best = -1.0;
    var best_e = E;
    for (var i = 0u; i < (E + TEAM - 1u) / TEAM; i++) {
      let e = i * TEAM + lane;
      if (e < E && (taken[i / 32u] & (1u << (i % 32u))) == 0u && topk_prob[e] > best) { best = topk_prob[e]; best_e = e; }   // ties: the lower index stays
    }
    let top = team_max(lid, best);
    let e = u32(-team_max(lid, -f32(select(E, best_e, best == top))));   // the lowest index holding it
    for (var w = 0u; w < TOPK_MASKS; w++) {
      if (e % TEAM == lane && e / TEAM / 32u == w) { taken[w] |= 1u << (e / TEAM % 32u); }
    }
    if (lid == 0u) { topk_idx[r] = e; topk_w[r] = top; }
    sum += top;   // in rank order, as torch sums the sorted top-k
  }
  if (NORM_TOPK && lid == 0u) {
    for (var r = 0u; r < TOPK; r++) { topk_w[r] = topk_w[r] / sum; }
  }
  workgroupBarrier();
}
