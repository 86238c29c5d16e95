import { describe, it } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { rmsNormZC } from '../../src/gpu/kernels/norm.ts';
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
        ctx.run([rmsNormZC(ctx, ctx.upload(x, 'x'), ctx.upload(w, 'w'), y, rows, D, 1e-6)]);
        expectClose('rmsnorm', await ctx.readF32(y, rows * D), ref.rmsNormZC(x, w, D, 1e-6), { rel: 1e-5 });
      }));
  }
});
