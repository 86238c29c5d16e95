// Tolerance checks with messages that say where and by how much a tensor is off.
import { expect } from 'vitest';

export interface Diff {
  maxAbs: number;
  rel: number; // maxAbs / max|ref|
  at: number; // flat index of the worst element
  cos: number;
  nonFinite: number;
}

export function diff(actual: ArrayLike<number>, expected: ArrayLike<number>): Diff {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} != expected ${expected.length}`);
  let maxAbs = 0, at = -1, maxRef = 0, dot = 0, na = 0, ne = 0, nonFinite = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    if (!Number.isFinite(a)) { nonFinite++; at = i; maxAbs = Infinity; continue; }
    const d = Math.abs(a - e);
    if (d > maxAbs) { maxAbs = d; at = i; }
    maxRef = Math.max(maxRef, Math.abs(e));
    dot += a * e; na += a * a; ne += e * e;
  }
  return { maxAbs, rel: maxRef > 0 ? maxAbs / maxRef : maxAbs, at, cos: dot / Math.sqrt(na * ne || 1), nonFinite };
}

/** Assert |actual - expected| within `rel` of max|expected| (and optionally an absolute bound). */
export function expectClose(
  label: string,
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: { rel?: number; maxAbs?: number },
): Diff {
  const d = diff(actual, expected);
  const where = `${label}: maxAbs ${d.maxAbs.toExponential(3)} rel ${d.rel.toExponential(3)} at [${d.at}] (got ${actual[d.at]}, want ${expected[d.at]}), ${d.nonFinite} non-finite`;
  expect(d.nonFinite, where).toBe(0);
  if (tol.rel !== undefined) expect(d.rel, where).toBeLessThanOrEqual(tol.rel);
  if (tol.maxAbs !== undefined) expect(d.maxAbs, where).toBeLessThanOrEqual(tol.maxAbs);
  return d;
}
