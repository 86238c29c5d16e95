// One real kernel from our tree, run the way the runtime runs it: zero-centred RMSNorm (shaders/norm.wgsl) through
// GpuContext, with the CPU oracle (src/reference/ops.ts) computed here in the browser too. Both go back to Node,
// which compares them (test/helpers/compare.ts needs vitest, so it cannot load in a page).
import { GpuContext } from '../../../src/gpu/context.ts';
import { rmsNorm } from '../../../src/kernels/norm.ts';
import * as ref from '../../../src/reference/ops.ts';
import { randn } from '../../helpers/random.ts';
import { scoped } from './gpu.ts';

export interface CaseResult {
  gpu: number[];
  ref: number[];
  gpuErrors: string[];
}

export async function rmsNormCase(device: GPUDevice, rows: number, D: number, eps = 1e-6): Promise<CaseResult> {
  const ctx = new GpuContext(device);
  const x = randn(rows * D, 11), w = randn(D, 12, 0.1);
  const { result: gpu, gpuErrors } = await scoped(device, async () => {
    // The output starts as NaN, so an element the kernel skips cannot pass.
    const y = ctx.upload(new Float32Array(rows * D).fill(NaN), 'y');
    ctx.run([rmsNorm(ctx, ctx.upload(x, 'x'), ctx.upload(w, 'w'), y, rows, D, eps)]);
    return ctx.readF32(y, rows * D);
  });
  return { gpu: Array.from(gpu), ref: Array.from(ref.rmsNorm(x, w, D, eps)), gpuErrors };
}
