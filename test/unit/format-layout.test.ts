// The load-time un-interleave of the GDN input projections (src/format/layout.ts, REFERENCE.md §1.2).
// Each on-disk row is labelled with what it holds, built group by group in the on-disk order of the table
// in §1.2; the re-laid-out rows must then read [q_all | k_all | v_all | z] and [b | a], head-major.
// (The fixture tests check the same permutation end to end through HF's GDN taps.)
import { describe, expect, it } from 'vitest';
import { baRowOrder, fusedGdnInProj, gdnInProjOffsets, qkvzRowOrder, uninterleaveBa, uninterleaveQkvz } from '../../src/format/layout.ts';

// asym-like: r = Hv/Hk = 3, dk != dv; H = 2 columns, the second column = -label so rows move whole
const cfg = { hiddenSize: 2, linearNumKeyHeads: 2, linearNumValueHeads: 6, linearKeyHeadDim: 3, linearValueHeadDim: 5 };
const Hk = 2, Hv = 6, r = 3, dk = 3, dv = 5;

function diskQkvz(): string[] {
  const rows: string[] = [];
  for (let g = 0; g < Hk; g++) {
    for (let d = 0; d < dk; d++) rows.push(`q${g}.${d}`);
    for (let d = 0; d < dk; d++) rows.push(`k${g}.${d}`);
    for (let j = 0; j < r; j++) for (let d = 0; d < dv; d++) rows.push(`v${g * r + j}.${d}`);
    for (let j = 0; j < r; j++) for (let d = 0; d < dv; d++) rows.push(`z${g * r + j}.${d}`);
  }
  return rows;
}
function diskBa(): string[] {
  const rows: string[] = [];
  for (let g = 0; g < Hk; g++) {
    for (let j = 0; j < r; j++) rows.push(`b${g * r + j}`);
    for (let j = 0; j < r; j++) rows.push(`a${g * r + j}`);
  }
  return rows;
}
const contiguous = (kind: string, heads: number, dim: number) =>
  Array.from({ length: heads * dim }, (_, i) => `${kind}${Math.floor(i / dim)}.${i % dim}`);

/** Weight whose row i is [i, -i]; read back which label each output row came from. */
function labelled(n: number) {
  return Float32Array.from({ length: 2 * n }, (_, i) => (i % 2 ? -Math.floor(i / 2) : Math.floor(i / 2)));
}
function labelsOf(w: Float32Array, disk: string[]): string[] {
  return Array.from({ length: w.length / 2 }, (_, i) => {
    expect(w[2 * i + 1]).toBe(-w[2 * i]); // whole rows moved
    return disk[w[2 * i]];
  });
}

describe('GDN projection layout', () => {
  const qkvz = diskQkvz(), ba = diskBa();
  const wantQkvz = [...contiguous('q', Hk, dk), ...contiguous('k', Hk, dk), ...contiguous('v', Hv, dv), ...contiguous('z', Hv, dv)];
  const wantBa = [...Array.from({ length: Hv }, (_, h) => `b${h}`), ...Array.from({ length: Hv }, (_, h) => `a${h}`)];

  it('in_proj_qkvz rows become [q_all | k_all | v_all | z]', () => {
    expect(qkvzRowOrder(cfg).length).toBe(qkvz.length);
    expect(labelsOf(uninterleaveQkvz(cfg, labelled(qkvz.length)), qkvz)).toEqual(wantQkvz);
  });

  it('in_proj_ba rows become [b | a]', () => {
    expect(baRowOrder(cfg).length).toBe(ba.length);
    expect(labelsOf(uninterleaveBa(cfg, labelled(ba.length)), ba)).toEqual(wantBa);
  });

  it('fused projection is [q | k | v | z | b | a] at gdnInProjOffsets', () => {
    const fused = fusedGdnInProj(cfg, labelled(qkvz.length), labelled(ba.length));
    const labels = labelsOf(fused.subarray(0, 2 * qkvz.length), qkvz).concat(labelsOf(fused.subarray(2 * qkvz.length), ba));
    const off = gdnInProjOffsets(cfg);
    expect(labels.length).toBe(off.rows);
    expect(labels).toEqual([...wantQkvz, ...wantBa]);
    expect([labels[off.q], labels[off.k], labels[off.v], labels[off.z], labels[off.b], labels[off.a]]).toEqual(['q0.0', 'k0.0', 'v0.0', 'z0.0', 'b0', 'a0']);
  });

  it('rejects a weight of the wrong size', () => {
    expect(() => uninterleaveBa(cfg, new Float32Array(5))).toThrow(/rows/);
  });
});
