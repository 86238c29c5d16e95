// GPU-resident weights. A weight is one packed array<u32> (src/quant/formats.ts, shaders/quant.wgsl) at a
// 256-byte aligned offset of a buffer, so many weights (e.g. the stacked experts of a layer) can share one
// buffer and each still binds as its own range.
import { packedWords, type WeightFormat } from '../quant/formats.ts';

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
