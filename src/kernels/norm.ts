// RMSNorm kernels (shaders/norm.wgsl).
import { type GpuContext, type Op, type Binding } from '../gpu/context.ts';
import { grid } from './grid.ts';

/**
 * Threads a row: a thread's loads over the row are one dependent chain, so wide rows take more threads (H100, a
 * verify step's add_rms_norm of 2 x 2048 with 64 threads: 36 us, 32 loads a thread; BENCHMARKS.md, sixth session).
 */
const rowThreads = (D: number) => (D >= 1024 ? 256 : 64);

/** y (rows, D) = Qwen3NextRMSNorm(x) (rows, D): x · rsqrt(mean(x²) + eps) · (1 + w), the weight zero-centred. */
export function rmsNorm(ctx: GpuContext, x: Binding, w: Binding, y: Binding, rows: number, D: number, eps: number): Op {
  const params = ctx.uniform(new Uint32Array([rows, 0, 0, 0]));
  return ctx.op(`rms_norm(${rows}x${D})`, 'norm.wgsl', 'rms_norm', { D, EPS: eps, WG: rowThreads(D), TEAM: 32 }, [params, x, w, y], grid(rows));
}

/** h (rows, D) += delta (rows, D), then y = Qwen3NextRMSNorm of the new h with weight w (D): one dispatch. */
export function addRmsNorm(ctx: GpuContext, delta: Binding, h: Binding, w: Binding, y: Binding, rows: number, D: number, eps: number): Op {
  const params = ctx.uniform(new Uint32Array([rows, 0, 0, 0]));
  return ctx.op(`add_rms_norm(${rows}x${D})`, 'norm.wgsl', 'add_rms_norm', { D, EPS: eps, WG: rowThreads(D), TEAM: 32 }, [params, h, w, y, delta], grid(rows));
}

/**
 * Qwen3NextRMSNormGated, the GDN output norm: y (rows, D) = w · (o·rsqrt(mean(o²)+eps)) · silu(z), plain w (not 1+w).
 * Row r = (t, h) with h < heads reads its gate at zOffset + t·zStride + h·D (elements) of `z`: for the GDN,
 * rows = T·Hv, D = dv, heads = Hv, z = the fused projection, zStride = P, zOffset = 2·keyDim + valueDim.
 * With heads = 1 the gate rows are simply zStride apart.
 */
export function rmsNormGated(ctx: GpuContext, o: Binding, z: Binding, zStride: number, w: Binding, y: Binding, rows: number, D: number, eps: number, heads = 1, zOffset = 0): Op {
  const params = ctx.uniform(new Uint32Array([rows, zStride, zOffset, heads]));
  return ctx.op(`rms_norm_gated(${rows}x${D})`, 'norm.wgsl', 'rms_norm_gated', { D, EPS: eps, WG: rowThreads(D), TEAM: 32 }, [params, o, w, y, z], grid(rows));
}
