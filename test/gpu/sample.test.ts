import { describe, expect, it } from 'vitest';
import { GpuContext, type Op } from '../../src/gpu/context.ts';
import { argmax, sample, type SampleParams } from '../../src/kernels/sample.ts';
import { withGpuErrors, poisoned } from '../helpers/gpu.ts';
import { randn } from '../helpers/random.ts';

type Params = Omit<SampleParams, 'previous'> & { previous?: number[] };

/**
 * The sampler's definition on the CPU, in f64 after the same f32 penalty and temperature steps: HF's
 * processors (ties at a threshold kept or dropped together), then the first id whose cumulative
 * probability passes `random`.
 */
function sampleRef(logits: Float32Array, p: Params): { token: number; probs: Float64Array } {
  const V = logits.length, penalty = p.repetitionPenalty ?? 1;
  const prev = new Set(penalty !== 1 ? (p.previous ?? []) : []);
  const s = Float64Array.from(logits, (l, i) => {
    if (prev.has(i)) l = Math.fround(l < 0 ? l * penalty : l / penalty);
    return Math.fround(l / p.temperature);
  });
  const order = Array.from(s.keys()).sort((i, j) => s[j] - s[i]);
  let tau = -Infinity; // keep s >= tau
  if (p.topK > 0 && p.topK < V) tau = s[order[p.topK - 1]];
  const mx = s[order[0]], m = s.map((v) => (v >= tau ? Math.exp(v - mx) : 0));
  if (p.topP < 1) {
    const Z = m.reduce((a, b) => a + b);
    // walk down the distinct values: keep one while the mass strictly above it is < topP of the total
    let above = 0;
    const tauK = tau;
    for (let r = 0; r < V && s[order[r]] >= tauK; ) {
      const v = s[order[r]];
      if (r > 0 && above >= p.topP * Z) break;
      tau = v;
      for (; r < V && s[order[r]] === v; r++) above += m[order[r]];
    }
  }
  const kept = m.map((v, i) => (s[i] >= tau ? v : 0)), Z = kept.reduce((a, b) => a + b);
  const probs = kept.map((v) => v / Z);
  let cum = 0;
  for (let i = 0; i < V; i++) if ((cum += probs[i]) > p.random && probs[i] > 0) return { token: i, probs };
  let last = V - 1;
  while (probs[last] === 0) last--;
  return { token: last, probs };
}

/** The reference token, or null when nudging random or top_p by 1e-5 changes it (f32 rounding could too). */
function robustRef(logits: Float32Array, p: Params): number | null {
  const t = sampleRef(logits, p).token;
  for (const d of [-1e-5, 1e-5]) {
    if (sampleRef(logits, { ...p, random: p.random + d }).token !== t) return null;
    if (p.topP < 1 && sampleRef(logits, { ...p, topP: p.topP + d }).token !== t) return null;
  }
  return t;
}

/** Run several samplers (ops built by `build` with an output range each) in one pass; read the ids. */
async function runMany(ctx: GpuContext, n: number, build: (out: { buffer: GPUBuffer; offset: number; size: number }, j: number) => Op[]): Promise<Uint32Array> {
  const out = poisoned(ctx.device, n * 256);
  ctx.run(Array.from({ length: n }, (_, j) => build({ buffer: out, offset: j * 256, size: 4 }, j)).flat());
  const words = new Uint32Array(await ctx.read(out));
  return Uint32Array.from({ length: n }, (_, j) => words[j * 64]);
}

const argmaxRef = (x: Float32Array) => x.reduce((b, v, i) => (v > x[b] ? i : b), 0);

describe('argmax', () => {
  it('full vocabulary, ties to the lowest index across and within blocks', () =>
    withGpuErrors(async (device) => {
      const ctx = new GpuContext(device);
      const V = 151936, x = randn(V, 1, 3);
      const tied = x.slice();
      const top = x[argmaxRef(x)] + 1;
      for (const i of [150000, 70001, 70000, 5000]) tied[i] = top;
      const small = Float32Array.from({ length: 37 }, (_, i) => (i === 20 || i === 30 ? -1 : -2));
      const cases: Float32Array[] = [x, tied, small, new Float32Array(1000).fill(-Infinity)];
      const got = await runMany(ctx, cases.length, (out, j) => argmax(ctx, ctx.upload(cases[j], 'logits'), out, cases[j].length));
      expect(Array.from(got)).toEqual([argmaxRef(x), 5000, 20, 0]);
    }));
});

describe('sampler', () => {
  it('greedy paths on the full vocabulary: temperature 0, top-k 1, tiny top-p, with repetition penalty', () =>
    withGpuErrors(async (device) => {
      const ctx = new GpuContext(device);
      const V = 151936, x = randn(V, 2, 3);
      const logits = ctx.upload(x, 'logits');
      const best = argmaxRef(x);
      // Penalise the winner (positive: divided) and a strongly negative runner-up candidate (multiplied).
      const prev = [best, best, argmaxRef(x.map((v) => -v))];
      const ids = ctx.upload(new Uint32Array(prev), 'prev');
      const cases: Params[] = [
        { temperature: 0, topK: 0, topP: 1, random: 0.5 },
        { temperature: 0.7, topK: 1, topP: 1, random: 0.999 },
        { temperature: 1.3, topK: 0, topP: 1e-6, random: 0.7 },
        { temperature: 0.7, topK: 20, topP: 1e-6, random: 0.2 },
        { temperature: 0, topK: 0, topP: 1, random: 0.5, repetitionPenalty: 4, previous: prev },
        { temperature: 0.5, topK: 1, topP: 1, random: 0.5, repetitionPenalty: 4, previous: prev },
      ];
      const got = await runMany(ctx, cases.length, (out, j) =>
        sample(ctx, logits, out, V, { ...cases[j], previous: cases[j].previous && { ids, count: prev.length } }));
      const penalised = sampleRef(x, { temperature: 1, topK: 1, topP: 1, random: 0, repetitionPenalty: 4, previous: prev }).token;
      expect(penalised).not.toBe(best);
      expect(Array.from(got)).toEqual([best, best, best, best, penalised, penalised]);
    }));

  it('full vocabulary draws match the CPU definition: Qwen3-Next defaults and pure top-p', () =>
    withGpuErrors(async (device) => {
      const ctx = new GpuContext(device);
      const V = 151936, x = randn(V, 3, 2.5);
      const logits = ctx.upload(x, 'logits');
      const cases: Params[] = [];
      for (const r of [0.03, 0.41, 0.77, 0.98]) cases.push({ temperature: 0.7, topK: 20, topP: 0.8, random: r });
      for (const r of [0.13, 0.62]) cases.push({ temperature: 0.9, topK: 0, topP: 0.95, random: r });
      cases.push({ temperature: 0.6, topK: 50, topP: 1, random: 0.55 });
      const want = cases.map((c) => robustRef(x, c));
      expect(want).not.toContain(null);
      const got = await runMany(ctx, cases.length, (out, j) => sample(ctx, logits, out, V, { ...cases[j], previous: undefined }));
      expect(Array.from(got)).toEqual(want);
    }));

  // A grid of `random` values stands in for a seeded stream: each draw must equal the CPU's, and the draws
  // together must follow the processed distribution (each token gets M·p ± 1 of the M stratified draws).
  const settings: [string, Params][] = [
    ['plain softmax', { temperature: 1, topK: 0, topP: 1, random: 0 }],
    ['temperature 0.6, top-k 7', { temperature: 0.6, topK: 7, topP: 1, random: 0 }],
    ['top-k 12, top-p 0.7', { temperature: 0.8, topK: 12, topP: 0.7, random: 0 }],
    ['top-p 0.9, penalty 1.5', { temperature: 1.1, topK: 0, topP: 0.9, random: 0, repetitionPenalty: 1.5, previous: [3, 8, 8, 30, 39] }],
  ];
  for (const [name, base] of settings) {
    it(`small vocabulary draws follow the distribution: ${name}`, () =>
      withGpuErrors(async (device) => {
        const ctx = new GpuContext(device);
        const V = 40, M = 64, x = randn(V, 7, 1.5);
        x[5] = x[6]; // a tie, kept or dropped together
        const logits = ctx.upload(x, 'logits');
        const ids = ctx.upload(new Uint32Array(base.previous ?? [0]), 'prev');
        const draws = Array.from({ length: M }, (_, j) => ({ ...base, random: (j + 0.5) / M }));
        const got = await runMany(ctx, M, (out, j) =>
          sample(ctx, logits, out, V, { ...draws[j], previous: base.previous && { ids, count: base.previous.length } }));
        const want = draws.map((d) => robustRef(x, d));
        const compared = want.filter((t) => t !== null).length;
        expect(compared).toBeGreaterThan(M - 3);
        want.forEach((t, j) => { if (t !== null) expect(got[j], `draw ${j} (random ${draws[j].random})`).toBe(t); });
        const counts = new Array(V).fill(0);
        got.forEach((t) => counts[t]++);
        const probs = sampleRef(x, base).probs;
        probs.forEach((q, i) => expect(Math.abs(counts[i] - M * q), `token ${i}`).toBeLessThanOrEqual(1 + M - compared));
        expect(probs.filter((q) => q > 0).length, 'the processors left a choice').toBeGreaterThan(1);
      }));
  }
});
