// Packing as an async function, so a converter can spread it over threads: packWeight is pure CPU (the int4
// least-squares fit costs ~1.5 us a value in one thread), and the real model has ~80G values to pack.
import { GROUP, groupsPerRow, packWeight, packedWords, type WeightFormat } from './formats.ts';

export type PackFn = (w: Float32Array, N: number, K: number, format: WeightFormat) => Promise<Uint32Array<ArrayBuffer>>;

/** In this thread. */
export const packInline: PackFn = async (w, N, K, format) => packWeight(w, N, K, format);

/**
 * A quantized (q4/q8) weight packed in row blocks by `pack` (in parallel when `pack` is a pool), then assembled:
 * the format is [all rows' codes | all rows' scales], each in row order, so block b's codes and scales land at
 * its first row's offsets in both parts. Bit-identical to packWeight on the whole matrix.
 */
export async function packRows(pack: PackFn, w: Float32Array, N: number, K: number, format: WeightFormat, rowsPerBlock: number): Promise<Uint32Array<ArrayBuffer>> {
  if ((format !== 'q4' && format !== 'q8') || N <= rowsPerBlock) return pack(w, N, K, format);
  const G = groupsPerRow(K), codeWords = G * (GROUP / (format === 'q4' ? 8 : 4)); // per row
  const out = new Uint32Array(packedWords(format, N, K)), scaleBase = N * codeWords;
  const blocks: Promise<void>[] = [];
  for (let n0 = 0; n0 < N; n0 += rowsPerBlock) {
    const n = Math.min(rowsPerBlock, N - n0);
    blocks.push(pack(w.slice(n0 * K, (n0 + n) * K), n, K, format).then((p) => {
      out.set(p.subarray(0, n * codeWords), n0 * codeWords);
      out.set(p.subarray(n * codeWords), scaleBase + n0 * G);
    }));
  }
  await Promise.all(blocks);
  return out;
}
