// Sums and maxima across threads, for every kernel that reduces: over a team (TEAM consecutive local indices, a
// power of two dividing WG) or over the whole workgroup. The includer declares `override WG: u32` and
// `override TEAM: u32`, and calls these in uniform control flow (every thread of the workgroup, the same number of
// times). This file is the portable version, in workgroup memory; reduce.subgroups.wgsl has the same functions on
// subgroup shuffles and replaces it where the device has subgroups at least TEAM wide (src/gpu/shaders.ts).

var<workgroup> reduce_buf: array<f32, WG>;

// Tree over `width` consecutive slots (a power of two): slot lid - lid % width ends with the group's total.
fn reduce_tree(lid: u32, v: f32, width: u32, is_max: bool) -> f32 {
  reduce_buf[lid] = v;
  workgroupBarrier();
  for (var s = width / 2u; s > 0u; s >>= 1u) {
    if (lid % width < s) {
      let a = reduce_buf[lid];
      let b = reduce_buf[lid + s];
      reduce_buf[lid] = select(a + b, max(a, b), is_max);
    }
    workgroupBarrier();
  }
  let r = reduce_buf[lid - lid % width];
  workgroupBarrier();
  return r;
}

fn team_sum(lid: u32, v: f32) -> f32 { return reduce_tree(lid, v, TEAM, false); }
fn workgroup_sum(lid: u32, v: f32) -> f32 { return reduce_tree(lid, v, WG, false); }
fn workgroup_max(lid: u32, v: f32) -> f32 { return reduce_tree(lid, v, WG, true); }
