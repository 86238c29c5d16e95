import { describe, it } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { addInPlace, siluMul } from '../../src/kernels/elementwise.ts';
import { silu } from '../../src/reference/ops.ts';
import { withGpuErrors, poisoned } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/compare.ts';
import { randn } from '../helpers/random.ts';

describe('elementwise kernels', () => {
  it('add in place, n not a multiple of the workgroup', () =>
    withGpuErrors(async (device) => {
      const ctx = new GpuContext(device);
      const n = 1000, a = randn(n, 1), b = randn(n, 2);
      const y = ctx.upload(b, 'y');
      ctx.run([addInPlace(ctx, ctx.upload(a, 'a'), y, n)]);
      expectClose('add', await ctx.readF32(y, n), a.map((v, i) => v + b[i]), { rel: 1e-6 });
    }));
  it('silu(gate) * up from a fused projection', () =>
    withGpuErrors(async (device) => {
      const ctx = new GpuContext(device);
      const rows = 7, cols = 48, x = randn(rows * 2 * cols, 3);
      const want = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) want[r * cols + c] = silu(x[r * 2 * cols + c]) * x[r * 2 * cols + cols + c];
      const y = poisoned(device, rows * cols * 4);
      ctx.run([siluMul(ctx, ctx.upload(x, 'x'), y, rows, cols)]);
      expectClose('silu_mul', await ctx.readF32(y, rows * cols), want, { rel: 1e-6 });
    }));
});
