// WebGPU caps each grid dimension at 65,535 workgroups: fold larger counts into (x, y) and let the
// shader recompute the flat index as wg.x + wg.y * 65535 (and return when it is past the end).
export const MAX_GROUPS = 65535;

export function grid(groups: number): [number, number] {
  if (groups <= MAX_GROUPS) return [Math.max(1, groups), 1];
  return [MAX_GROUPS, Math.ceil(groups / MAX_GROUPS)];
}
