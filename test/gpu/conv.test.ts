import { describe, expect, it } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { causalConv1d } from '../../src/kernels/conv.ts';
import { matmul } from '../../src/kernels/matmul.ts';
import * as ref from '../../src/reference/ops.ts';
import { withGpuErrors, poisoned, uploadWeight } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/compare.ts';
import { randn } from '../helpers/random.ts';

/** The conv input columns [0, C) of a (T, P) projection. */
function convInputs(proj: Float32Array, T: number, P: number, C: number): Float32Array {
  const x = new Float32Array(T * C);
  for (let t = 0; t < T; t++) x.set(proj.subarray(t * P, t * P + C), t * C);
  return x;
}

describe('causal conv1d + SiLU', () => {
  // C = 300 spans two workgroups of channels; P > C like the fused projection; T < K-1, one block, many blocks.
  for (const [T, C, K] of [[1, 300, 4], [2, 300, 4], [3, 13, 4], [16, 13, 4], [17, 300, 4], [65, 37, 4], [200, 5, 3]]) {
    it(`T=${T} C=${C} K=${K}, nonzero state`, () =>
      withGpuErrors(async (device) => {
        const ctx = new GpuContext(device);
        const P = C + 7;
        const proj = randn(T * P, 1), w = randn(C * K, 2, 0.5), state0 = randn(C * (K - 1), 3);
        const state = ctx.upload(state0, 'state'), y = poisoned(device, T * C * 4);
        ctx.run([causalConv1d(ctx, ctx.upload(proj, 'proj'), P, ctx.upload(w, 'w'), state, y, T, C, K)]);
        const want = ref.causalConv1dSilu(convInputs(proj, T, P, C), w, state0, T, C, K);
        expectClose('y', await ctx.readF32(y, T * C), want.y, { rel: 1e-5 });
        expectClose('state', await ctx.readF32(state, C * (K - 1)), want.state, { rel: 0 });
      }));
  }

  // Decode-style continuation: T1 tokens, then T2 more from the carried state == T1+T2 tokens at once.
  for (const [T1, T2] of [[1, 1], [2, 1], [40, 25], [1, 64]]) {
    it(`two calls (${T1} + ${T2}) == one call`, () =>
      withGpuErrors(async (device) => {
        const ctx = new GpuContext(device);
        const C = 29, K = 4, P = 64, T = T1 + T2; // P·4 = 256 B: the second call binds at a row offset
        const proj = randn(T * P, 4), w = randn(C * K, 5, 0.5), state0 = randn(C * (K - 1), 6);
        const state = ctx.upload(state0, 'state');
        const y1 = poisoned(device, T1 * C * 4), y2 = poisoned(device, T2 * C * 4);
        const projBuf = ctx.upload(proj, 'proj'), wBuf = ctx.upload(w, 'w');
        ctx.run([
          causalConv1d(ctx, { buffer: projBuf, size: T1 * P * 4 }, P, wBuf, state, y1, T1, C, K),
          causalConv1d(ctx, { buffer: projBuf, offset: T1 * P * 4 }, P, wBuf, state, y2, T2, C, K),
        ]);
        const want = ref.causalConv1dSilu(convInputs(proj, T, P, C), w, state0, T, C, K);
        const got = new Float32Array(T * C);
        got.set(await ctx.readF32(y1, T1 * C));
        got.set(await ctx.readF32(y2, T2 * C), T1 * C);
        expectClose('y', got, want.y, { rel: 1e-5 });
        expectClose('state', await ctx.readF32(state, C * (K - 1)), want.state, { rel: 0 });
      }));
  }
});
