import { describe, expect, it } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { type GdnShape, gdnPrep, gdnRecurrent, gdnStep, gdnChunked, gdnChunkedScratchBytes } from '../../src/kernels/gdn.ts';
import * as ref from '../../src/reference/ops.ts';
import { withGpuErrors, poisoned } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/compare.ts';
import { randn, randu } from '../helpers/random.ts';
import { locatePreset, type Preset } from '../helpers/fixtures.ts';

// One context for the whole file: SwiftShader takes seconds to compile gdn_chunk_wy, so share the pipeline cache.
let sharedCtx: GpuContext | undefined;
const context = (device: GPUDevice) => (sharedCtx ??= new GpuContext(device));

interface GdnDims { T: number; Hk: number; Hv: number; dk: number; dv: number }
const shape = (d: GdnDims): GdnShape => ({ linearNumKeyHeads: d.Hk, linearNumValueHeads: d.Hv, linearKeyHeadDim: d.dk, linearValueHeadDim: d.dv });
const convDimOf = (d: GdnDims) => 2 * d.Hk * d.dk + d.Hv * d.dv;

/** (T, Hk, D) key-head rows -> (T, Hv, D): value head h takes key head ⌊h / r⌋ (repeat_interleave). */
function expandHeads(x: Float32Array, T: number, Hk: number, Hv: number, D: number): Float32Array {
  const out = new Float32Array(T * Hv * D), r = Hv / Hk;
  for (let t = 0; t < T; t++) for (let h = 0; h < Hv; h++) out.set(x.subarray((t * Hk + Math.floor(h / r)) * D, (t * Hk + Math.floor(h / r) + 1) * D), (t * Hv + h) * D);
  return out;
}

/** The conv output rows [q (Hk, dk) | k (Hk, dk) | v (Hv, dv)] for T tokens. */
function convOutput(q: Float32Array, k: Float32Array, v: Float32Array, d: GdnDims): Float32Array {
  const kd = d.Hk * d.dk, vd = d.Hv * d.dv, C = convDimOf(d), y = new Float32Array(d.T * C);
  for (let t = 0; t < d.T; t++) {
    y.set(q.subarray(t * kd, (t + 1) * kd), t * C);
    y.set(k.subarray(t * kd, (t + 1) * kd), t * C + kd);
    y.set(v.subarray(t * vd, (t + 1) * vd), t * C + 2 * kd);
  }
  return y;
}

/** Upload GDN core inputs; q̂, k̂ at key heads, v inside a conv-output buffer. Returns buffers for both paths. */
function uploadCore(ctx: GpuContext, qh: Float32Array, kh: Float32Array, v: Float32Array, g: Float32Array, beta: Float32Array, d: GdnDims) {
  // q/k slots of y are junk here: the core kernels read q̂, k̂ from their own buffers and only v from y
  const y = convOutput(new Float32Array(d.T * d.Hk * d.dk).fill(NaN), new Float32Array(d.T * d.Hk * d.dk).fill(NaN), v, d);
  return { q: ctx.upload(qh, 'q'), k: ctx.upload(kh, 'k'), y: ctx.upload(y, 'y'), g: ctx.upload(g, 'g'), beta: ctx.upload(beta, 'beta') };
}

type Core = ReturnType<typeof uploadCore>;

/** Chunked path; scratch: a poisoned buffer of our own, or (ownScratch false) the wrapper's shared one. */
async function runChunked(ctx: GpuContext, b: Core, S0: Float32Array, d: GdnDims, ownScratch = true) {
  const state = ctx.upload(S0, 'state'), o = poisoned(ctx.device, d.T * d.Hv * d.dv * 4);
  const scratch = ownScratch ? poisoned(ctx.device, gdnChunkedScratchBytes(d.T, shape(d))) : undefined;
  ctx.run(gdnChunked(ctx, b.q, b.k, b.y, b.g, b.beta, state, o, d.T, shape(d), scratch));
  return { o: await ctx.readF32(o, d.T * d.Hv * d.dv), S: await ctx.readF32(state, d.Hv * d.dk * d.dv) };
}

async function runRecurrent(ctx: GpuContext, b: Core, S0: Float32Array, d: GdnDims) {
  const state = ctx.upload(S0, 'state'), o = poisoned(ctx.device, d.T * d.Hv * d.dv * 4);
  ctx.run(gdnRecurrent(ctx, b.q, b.k, b.y, b.g, b.beta, state, o, d.T, shape(d)));
  return { o: await ctx.readF32(o, d.T * d.Hv * d.dv), S: await ctx.readF32(state, d.Hv * d.dk * d.dv) };
}

/** q̂ = l2norm(q)·dk^-1/2 per head row. */
function qHat(q: Float32Array, dk: number): Float32Array {
  const out = ref.l2Norm(q, dk);
  for (let i = 0; i < out.length; i++) out[i] *= 1 / Math.sqrt(dk);
  return out;
}

describe('GDN gate/norm prep', () => {
  for (const T of [1, 65]) {
    it(`T=${T} Hk=2 Hv=6 dk=16 dv=24`, () =>
      withGpuErrors(async (device) => {
        const ctx = context(device);
        const d: GdnDims = { T, Hk: 2, Hv: 6, dk: 16, dv: 24 };
        const C = convDimOf(d), kd = d.Hk * d.dk, P = 2 * kd + 2 * d.Hv * d.dv + 2 * d.Hv;
        const y = randn(T * C, 1), proj = randn(T * P, 2, 8), aLog = randu(d.Hv, 3, -2, 2), dtBias = randn(d.Hv, 4);
        const q = poisoned(device, T * kd * 4), k = poisoned(device, T * kd * 4), g = poisoned(device, T * d.Hv * 4), beta = poisoned(device, T * d.Hv * 4);
        ctx.run([gdnPrep(ctx, ctx.upload(y, 'y'), ctx.upload(proj, 'proj'), P, ctx.upload(aLog, 'A_log'), ctx.upload(dtBias, 'dt_bias'), q, k, g, beta, T, shape(d))]);
        const qRaw = new Float32Array(T * kd), kRaw = new Float32Array(T * kd), gRef = new Float32Array(T * d.Hv), betaRef = new Float32Array(T * d.Hv);
        for (let t = 0; t < T; t++) {
          qRaw.set(y.subarray(t * C, t * C + kd), t * kd);
          kRaw.set(y.subarray(t * C + kd, t * C + 2 * kd), t * kd);
          for (let h = 0; h < d.Hv; h++) {
            const b = proj[t * P + P - 2 * d.Hv + h], a = proj[t * P + P - d.Hv + h];
            gRef[t * d.Hv + h] = -Math.exp(aLog[h]) * ref.softplus(a + dtBias[h]);
            betaRef[t * d.Hv + h] = ref.sigmoid(b);
          }
        }
        expectClose('q̂', await ctx.readF32(q, T * kd), qHat(qRaw, d.dk), { rel: 1e-5 });
        expectClose('k̂', await ctx.readF32(k, T * kd), ref.l2Norm(kRaw, d.dk), { rel: 1e-5 });
        expectClose('g', await ctx.readF32(g, T * d.Hv), gRef, { rel: 1e-5 });
        expectClose('beta', await ctx.readF32(beta, T * d.Hv), betaRef, { rel: 1e-5 });
      }));
  }
});

describe('GDN delta rule: chunked and recurrent vs the CPU recurrence', () => {
  const decays = { slow: [-0.05, -0.001], fast: [-6, -0.5] } as const;
  const shapes: [GdnDims, keyof typeof decays][] = [];
  for (const T of [1, 63, 64, 65, 200]) for (const decay of ['slow', 'fast'] as const) shapes.push([{ T, Hk: 2, Hv: 6, dk: 16, dv: 24 }, decay]);
  shapes.push([{ T: 130, Hk: 1, Hv: 2, dk: 128, dv: 128 }, 'slow']); // the real head size: 256 solve columns, 8 state slices

  for (const [d, decay] of shapes) {
    it(`T=${d.T} Hk=${d.Hk} Hv=${d.Hv} dk=${d.dk} dv=${d.dv}, ${decay} decay, nonzero initial state`, () =>
      withGpuErrors(async (device) => {
        const ctx = context(device);
        const { T, Hk, Hv, dk, dv } = d, seed = T * 7 + dk;
        const qh = qHat(randn(T * Hk * dk, seed), dk), kh = ref.l2Norm(randn(T * Hk * dk, seed + 1), dk);
        const v = randn(T * Hv * dv, seed + 2), beta = randu(T * Hv, seed + 3, 0.05, 0.95);
        const g = randu(T * Hv, seed + 4, ...decays[decay]), S0 = randn(Hv * dk * dv, seed + 5, 0.5);

        const S = S0.slice();
        const oRef = ref.gatedDeltaRecurrent(expandHeads(qh, T, Hk, Hv, dk), expandHeads(kh, T, Hk, Hv, dk), v, g, beta, S, T, Hv, dk, dv);
        const bufs = uploadCore(ctx, qh, kh, v, g, beta, d);
        const chunked = await runChunked(ctx, bufs, S0, d);
        const recurrent = await runRecurrent(ctx, bufs, S0, d);
        expectClose('chunked o', chunked.o, oRef, { rel: 2e-5 });
        expectClose('chunked state', chunked.S, S, { rel: 2e-5 });
        expectClose('recurrent o', recurrent.o, oRef, { rel: 2e-5 });
        expectClose('recurrent state', recurrent.S, S, { rel: 2e-5 });
        expectClose('chunked vs recurrent o', chunked.o, recurrent.o, { rel: 2e-5 });
      }));
  }

  // Chunked prefill continuation: 70 tokens then 130 from the carried state (chunk boundaries fall elsewhere).
  it('chunked 70 + 130 tokens == the recurrence over 200', () =>
    withGpuErrors(async (device) => {
      const ctx = context(device);
      const full: GdnDims = { T: 200, Hk: 2, Hv: 6, dk: 16, dv: 24 }, { Hk, Hv, dk, dv } = full;
      const qh = qHat(randn(200 * Hk * dk, 11), dk), kh = ref.l2Norm(randn(200 * Hk * dk, 12), dk);
      const v = randn(200 * Hv * dv, 13), beta = randu(200 * Hv, 14, 0.05, 0.95), g = randu(200 * Hv, 15, -1, -0.01), S0 = randn(Hv * dk * dv, 16, 0.5);
      const S = S0.slice();
      const oRef = ref.gatedDeltaRecurrent(expandHeads(qh, 200, Hk, Hv, dk), expandHeads(kh, 200, Hk, Hv, dk), v, g, beta, S, 200, Hv, dk, dv);
      const piece = (t0: number, T: number) => {
        const d = { ...full, T };
        const rows = (x: Float32Array, w: number) => x.slice(t0 * w, (t0 + T) * w);
        return [d, uploadCore(ctx, rows(qh, Hk * dk), rows(kh, Hk * dk), rows(v, Hv * dv), rows(g, Hv), rows(beta, Hv), d)] as const;
      };
      const [d1, b1] = piece(0, 70), [d2, b2] = piece(70, 130);
      const first = await runChunked(ctx, b1, S0, d1, false);
      const second = await runChunked(ctx, b2, first.S, d2, false);
      const o = new Float32Array(200 * Hv * dv);
      o.set(first.o);
      o.set(second.o, 70 * Hv * dv);
      expectClose('o', o, oRef, { rel: 2e-5 });
      expectClose('state', second.S, S, { rel: 2e-5 });
    }));
});

// gdn_step (decode) takes the raw conv output and proj's b, a columns and does prep + the delta rule itself.
describe('GDN fused decode step (prep + recurrent) vs the CPU prep and recurrence', () => {
  const cases: GdnDims[] = [{ T: 1, Hk: 2, Hv: 6, dk: 16, dv: 24 }, { T: 3, Hk: 2, Hv: 6, dk: 16, dv: 24 }, { T: 2, Hk: 1, Hv: 2, dk: 128, dv: 128 }, { T: 1, Hk: 1, Hv: 2, dk: 256, dv: 40 }];
  for (const d of cases) {
    it(`T=${d.T} Hk=${d.Hk} Hv=${d.Hv} dk=${d.dk} dv=${d.dv}, nonzero initial state`, () =>
      withGpuErrors(async (device) => {
        const ctx = context(device);
        const { T, Hk, Hv, dk, dv } = d, C = convDimOf(d), kd = Hk * dk, P = C + Hv * dv + 2 * Hv, seed = 100 + T * 7 + dk;
        const y = randn(T * C, seed), proj = randn(T * P, seed + 1, 2), aLog = randu(Hv, seed + 2, -2, 1), dtBias = randn(Hv, seed + 3);
        const S0 = randn(Hv * dk * dv, seed + 4, 0.5);
        const qRaw = new Float32Array(T * kd), kRaw = new Float32Array(T * kd), v = new Float32Array(T * Hv * dv), g = new Float32Array(T * Hv), beta = new Float32Array(T * Hv);
        for (let t = 0; t < T; t++) {
          qRaw.set(y.subarray(t * C, t * C + kd), t * kd);
          kRaw.set(y.subarray(t * C + kd, t * C + 2 * kd), t * kd);
          v.set(y.subarray(t * C + 2 * kd, (t + 1) * C), t * Hv * dv);
          for (let h = 0; h < Hv; h++) {
            g[t * Hv + h] = -Math.exp(aLog[h]) * ref.softplus(proj[t * P + P - Hv + h] + dtBias[h]);
            beta[t * Hv + h] = ref.sigmoid(proj[t * P + P - 2 * Hv + h]);
          }
        }
        const S = S0.slice();
        const oRef = ref.gatedDeltaRecurrent(expandHeads(qHat(qRaw, dk), T, Hk, Hv, dk), expandHeads(ref.l2Norm(kRaw, dk), T, Hk, Hv, dk), v, g, beta, S, T, Hv, dk, dv);
        for (const c of [ctx, new GpuContext(device, { subgroups: false })]) { // team sums on subgroups, then in workgroup memory
          const state = c.upload(S0, 'state'), o = poisoned(device, T * Hv * dv * 4);
          c.run([gdnStep(c, c.upload(y, 'y'), c.upload(proj, 'proj'), P, c.upload(aLog, 'A_log'), c.upload(dtBias, 'dt_bias'), state, o, T, shape(d))]);
          expectClose('o', await c.readF32(o, T * Hv * dv), oRef, { rel: 2e-5 });
          expectClose('state', await c.readF32(state, Hv * dk * dv), S, { rel: 2e-5 });
        }
      }));
  }
});

// HF fixture taps: q, k (T, Hv, dk) after conv+SiLU and GQA expansion, before l2/scale; v, g, beta; core_out and
// final_state of a fresh prefill. We take key head kh from value head kh·r (checking the copies agree, which is
// what repeat_interleave means), rebuild the conv output, and run prep (l2/scale) + both delta-rule kernels.
describe('GDN kernels vs HF fixture taps', () => {
  for (const name of ['tiny', 'asym'] as const) {
    const preset = locatePreset(name);
    it.skipIf(!preset)(`${name}: prep + chunked + recurrent == core_out, final_state`, () =>
      withGpuErrors(async (device) => {
        const p = preset as Preset, ctx = context(device);
        const rc = p.manifest.runtime_config as Record<string, number & number[]>;
        const tol = (p.manifest.tolerances.fp32_runtime.gdn_core_out_and_states as { rel: number }).rel;
        const c = p.cases('taps')[0];
        const taps = await p.load(c);
        const Hk = rc.linear_num_key_heads, Hv = rc.linear_num_value_heads, dk = rc.linear_key_head_dim, dv = rc.linear_value_head_dim, r = Hv / Hk;
        const T = taps.get('L0.gdn.q')!.shape[0];
        const d: GdnDims = { T, Hk, Hv, dk, dv };
        expect(Hv).toBeGreaterThan(Hk);
        for (const l of rc.linear_layers as unknown as number[]) {
          const tap = (s: string) => taps.get(`L${l}.gdn.${s}`)!.data as Float32Array;
          const keyHeads = (x: Float32Array) => {
            const out = new Float32Array(T * Hk * dk);
            for (let t = 0; t < T; t++) for (let kh = 0; kh < Hk; kh++) {
              for (let j = 1; j < r; j++) for (let a = 0; a < dk; a++) expect(x[(t * Hv + kh * r + j) * dk + a]).toBe(x[(t * Hv + kh * r) * dk + a]);
              out.set(x.subarray((t * Hv + kh * r) * dk, (t * Hv + kh * r + 1) * dk), (t * Hk + kh) * dk);
            }
            return out;
          };
          const y = ctx.upload(convOutput(keyHeads(tap('q')), keyHeads(tap('k')), tap('v'), d), 'y');
          const P = convDimOf(d) + Hv * dv + 2 * Hv;
          const zeros = (n: number) => ctx.upload(new Float32Array(n), 'zeros');
          const q = poisoned(device, T * Hk * dk * 4), k = poisoned(device, T * Hk * dk * 4);
          ctx.run([gdnPrep(ctx, y, zeros(T * P), P, zeros(Hv), zeros(Hv), q, k, poisoned(device, T * Hv * 4), poisoned(device, T * Hv * 4), T, shape(d))]);
          const bufs = { q, k, y, g: ctx.upload(tap('g'), 'g'), beta: ctx.upload(tap('beta'), 'beta') };
          const S0 = new Float32Array(Hv * dk * dv);
          for (const [path, got] of [['chunked', await runChunked(ctx, bufs, S0, d, false)], ['recurrent', await runRecurrent(ctx, bufs, S0, d)]] as const) {
            expectClose(`${name} L${l} ${path} core_out`, got.o, tap('core_out'), { rel: tol });
            expectClose(`${name} L${l} ${path} final_state`, got.S, tap('final_state'), { rel: tol });
          }
        }
      }));
  }
});
