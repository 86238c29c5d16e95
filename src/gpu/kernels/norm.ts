// RMSNorm kernels (shaders/norm.wgsl).
import { type GpuContext, type Op, type Binding } from '../context.ts';
import { grid } from './grid.ts';

/** y (rows, D) = zero-centred RMSNorm of x (rows, D) with weight w (D). */
export function rmsNormZC(ctx: GpuContext, x: Binding, w: Binding, y: Binding, rows: number, D: number, eps: number): Op {
  const params = ctx.uniform(new Uint32Array([rows, 0, 0, 0]));
  return ctx.op(`rms_norm_zc(${rows}x${D})`, 'norm.wgsl', 'rms_norm_zc', { D, EPS: eps, WG: 64 }, [params, x, w, y], grid(rows));
}
