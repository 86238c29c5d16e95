// GPU-resident weights. A weight is one packed array<u32> (src/quant/formats.ts, shaders/quant.wgsl) at a
// 256-byte aligned offset of a buffer, so many weights (e.g. the stacked experts of a layer) can share one
// buffer and each still binds as its own range.
import type { GpuContext } from './context.ts';
import { packWeight, packedWords, type WeightFormat } from '../quant/formats.ts';

export interface GpuWeight {
  buffer: GPUBuffer;
  offset: number; // bytes, a multiple of OFFSET_ALIGN
  format: WeightFormat;
  N: number; // rows (out features)
  K: number; // cols (in features)
}

/** minStorageBufferOffsetAlignment in every WebGPU implementation. */
export const OFFSET_ALIGN = 256;

const ceil16 = (n: number) => Math.ceil(n / 16) * 16;

/** Bytes of the packed data of an (N, K) weight. */
export const weightBytes = (format: WeightFormat, N: number, K: number) => packedWords(format, N, K) * 4;

/** The binding range of a weight. Its size is rounded up to 16 bytes: kernels may read it as array<vec4u>. */
export function weightBinding(w: GpuWeight): { buffer: GPUBuffer; offset: number; size: number } {
  const size = ceil16(weightBytes(w.format, w.N, w.K));
  if (w.offset % OFFSET_ALIGN !== 0) throw new RangeError(`weight offset ${w.offset} is not a multiple of ${OFFSET_ALIGN}`);
  if (w.offset + size > w.buffer.size) throw new RangeError(`weight (${w.N}, ${w.K}) ${w.format} at ${w.offset} needs ${size} bytes; buffer has ${w.buffer.size}`);
  return { buffer: w.buffer, offset: w.offset, size };
}

/** Pack W (N, K) row-major f32 into `format` and upload it as its own buffer. */
export function uploadWeight(ctx: GpuContext, w: Float32Array, N: number, K: number, format: WeightFormat, label: string): GpuWeight {
  return { buffer: ctx.upload(packWeight(w, N, K, format), label), offset: 0, format, N, K };
}

export interface WeightPart {
  w: Float32Array;
  N: number;
  K: number;
  format: WeightFormat;
}

/** Pack several weights into one buffer, each at an OFFSET_ALIGN-aligned offset (stacked experts). */
export function uploadWeights(ctx: GpuContext, parts: WeightPart[], label: string): GpuWeight[] {
  const offsets: number[] = [];
  let end = 0;
  for (const p of parts) {
    offsets.push(end);
    end = Math.ceil((end + weightBytes(p.format, p.N, p.K)) / OFFSET_ALIGN) * OFFSET_ALIGN;
  }
  const all = new Uint32Array(end / 4);
  parts.forEach((p, i) => all.set(packWeight(p.w, p.N, p.K, p.format), offsets[i] / 4));
  const buffer = ctx.upload(all, label);
  return parts.map((p, i) => ({ buffer, offset: offsets[i], format: p.format, N: p.N, K: p.K }));
}
