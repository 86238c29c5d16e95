// reduce.wgsl on subgroup shuffles: a team of TEAM consecutive local indices lies inside one subgroup (subgroups
// are at least TEAM wide here and tile the workgroup in order), so a butterfly of TEAM/2 .. 1 shuffles sums it
// with no barrier; a workgroup sum adds the WG / TEAM team totals through workgroup memory (one barrier pair).

var<workgroup> reduce_buf: array<f32, WG / TEAM>;

fn team_reduce(v: f32, is_max: bool) -> f32 {
  var r = v;
  for (var o = TEAM / 2u; o > 0u; o >>= 1u) {
    let b = subgroupShuffleXor(r, o);
    r = select(r + b, max(r, b), is_max);
  }
  return r;
}

fn workgroup_reduce(lid: u32, v: f32, is_max: bool) -> f32 {
  let t = team_reduce(v, is_max);
  if (lid % TEAM == 0u) { reduce_buf[lid / TEAM] = t; }
  workgroupBarrier();
  var r = reduce_buf[0];
  for (var i = 1u; i < WG / TEAM; i++) { r = select(r + reduce_buf[i], max(r, reduce_buf[i]), is_max); }
  workgroupBarrier();
  return r;
}

fn team_sum(lid: u32, v: f32) -> f32 { return team_reduce(v, false); }
fn workgroup_sum(lid: u32, v: f32) -> f32 { return workgroup_reduce(lid, v, false); }
fn workgroup_max(lid: u32, v: f32) -> f32 { return workgroup_reduce(lid, v, true); }
