// Token embedding gather (shaders/embed.wgsl).
import { type GpuContext, type Op, type Binding } from '../gpu/context.ts';
import { type GpuWeight, weightBinding } from '../gpu/packed-weight.ts';
import { FORMAT_ID } from '../quant/formats.ts';
import { grid } from './grid.ts';

const COLS = 256; // columns a workgroup: a 2048-wide decode token is 8 workgroups, not one

/** out (T, H) f32 = table[ids[t], :] dequantised; table is (V, H) in any format, ids (T) u32. Ids >= V give zeros. */
export function embed(ctx: GpuContext, ids: Binding, table: GpuWeight, out: Binding, T: number): Op {
  const params = ctx.uniform(new Uint32Array([T, 0, 0, 0]));
  const constants = { FORMAT: FORMAT_ID[table.format], V: table.N, H: table.K, WG: 64, COLS: COLS };
  return ctx.op(`embed_${table.format}(${T}x${table.K})`, 'embed.wgsl', 'embed', constants, [params, ids, weightBinding(table), out], grid(T * Math.ceil(table.K / COLS)));
}
