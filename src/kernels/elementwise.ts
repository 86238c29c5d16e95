// Elementwise glue (shaders/elementwise.wgsl).
import { ceilDiv, type Binding, type GpuContext, type Op } from '../gpu/context.ts';
import { grid } from './grid.ts';

/** y (n) += a (n). */
export function addInPlace(ctx: GpuContext, a: Binding, y: Binding, n: number): Op {
  const params = ctx.uniform(new Uint32Array([n, 0, 0, 0]));
  return ctx.op(`add(${n})`, 'elementwise.wgsl', 'add_inplace', {}, [params, a, y], grid(ceilDiv(n, 256)));
}

/** y (rows, cols) = silu(gate) * up, from x (rows, 2*cols) = [gate | up]. */
export function siluMul(ctx: GpuContext, x: Binding, y: Binding, rows: number, cols: number): Op {
  const n = rows * cols;
  const params = ctx.uniform(new Uint32Array([n, cols, 2 * cols, 0]));
  return ctx.op(`silu_mul(${rows}x${cols})`, 'elementwise.wgsl', 'silu_mul', {}, [params, x, y], grid(ceilDiv(n, 256)));
}
