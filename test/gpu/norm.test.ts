import { describe, it } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { addRmsNorm, rmsNorm, rmsNormGated } from '../../src/kernels/norm.ts';
import * as ref from '../../src/reference/ops.ts';
import { withGpuErrors, poisoned } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/compare.ts';
import { randn } from '../helpers/random.ts';

describe('norm kernels', () => {
  for (const [rows, D] of [[1, 64], [7, 48], [65, 256], [3, 2048]]) {
    it(`zero-centred RMSNorm rows=${rows} D=${D}`, () =>
      withGpuErrors(async (device) => {
        const ctx = new GpuContext(device);
        const x = randn(rows * D, 1), w = randn(D, 2, 0.1);
        const y = poisoned(device, rows * D * 4);
        ctx.run([rmsNorm(ctx, ctx.upload(x, 'x'), ctx.upload(w, 'w'), y, rows, D, 1e-6)]);
        expectClose('rmsnorm', await ctx.readF32(y, rows * D), ref.rmsNorm(x, w, D, 1e-6), { rel: 1e-5 });
      }));
  }

  for (const [rows, D] of [[1, 64], [5, 200], [3, 2048]]) {
    it(`residual add + zero-centred RMSNorm rows=${rows} D=${D}: both outputs`, () =>
      withGpuErrors(async (device) => {
        const ctx = new GpuContext(device);
        const h0 = randn(rows * D, 6, 3), delta = randn(rows * D, 7), w = randn(D, 8, 0.1);
        const h = ctx.upload(h0, 'h'), y = poisoned(device, rows * D * 4);
        ctx.run([addRmsNorm(ctx, ctx.upload(delta, 'delta'), h, ctx.upload(w, 'w'), y, rows, D, 1e-6)]);
        const sum = h0.map((v, i) => Math.fround(v + delta[i]));
        expectClose('h + delta', await ctx.readF32(h, rows * D), sum, { maxAbs: 0 });
        expectClose('rmsnorm(h + delta)', await ctx.readF32(y, rows * D), ref.rmsNorm(sum, w, D, 1e-6), { rel: 1e-5 });
      }));
  }

  // GDN layout: rows = T·Hv value heads of width dv; the gate z sits inside the fused projection (T, P) at
  // column zOffset, so gate rows are dv apart within a token and P apart across tokens.
  for (const [T, Hv, dv] of [[1, 6, 24], [9, 4, 16], [3, 32, 128]]) {
    it(`gated RMSNorm T=${T} Hv=${Hv} dv=${dv}, z strided in the projection`, () =>
      withGpuErrors(async (device) => {
        const ctx = new GpuContext(device);
        const rows = T * Hv, zOffset = 37, P = zOffset + Hv * dv + 11;
        const o = randn(rows * dv, 3), proj = randn(T * P, 4, 2), w = randn(dv, 5);
        const z = new Float32Array(rows * dv);
        for (let t = 0; t < T; t++) z.set(proj.subarray(t * P + zOffset, t * P + zOffset + Hv * dv), t * Hv * dv);
        const y = poisoned(device, rows * dv * 4);
        ctx.run([rmsNormGated(ctx, ctx.upload(o, 'o'), ctx.upload(proj, 'proj'), P, ctx.upload(w, 'w'), y, rows, dv, 1e-6, Hv, zOffset)]);
        expectClose('gated rmsnorm', await ctx.readF32(y, rows * dv), ref.rmsNormGated(o, z, w, dv, 1e-6), { rel: 1e-5 });
      }));
  }
});
