// Pack f32 weights into the GPU storage formats of shaders/quant.wgsl, and unpack them again (the CPU
// reference runs on the dequantized values, so a quantized kernel is tested exactly against it).
//
// q4/q8 are asymmetric ("scale + min", like llama.cpp's Q4_1) with groups of 32 along K and f16 scale/min:
// on trained weights the min term keeps int4 perplexity close to bf16, at 0.625 bytes per weight.

export type WeightFormat = 'f32' | 'f16' | 'q4' | 'q8';

/** The FORMAT override of the shaders (shaders/quant.wgsl: F32, F16, Q4, Q8). */
export const FORMAT_ID: Record<WeightFormat, number> = { f32: 0, f16: 1, q4: 2, q8: 3 };

export const GROUP = 32;

export const groupsPerRow = (K: number) => Math.ceil(K / GROUP);

/** Words of one packed (N, K) tensor in `format`. */
export function packedWords(format: WeightFormat, N: number, K: number): number {
  const G = groupsPerRow(K);
  switch (format) {
    case 'f32': return N * K;
    case 'f16': return N * Math.ceil(K / 2);
    case 'q4': return N * G * 5;
    case 'q8': return N * G * 9;
  }
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** f32 -> IEEE half bits, round to nearest even (Math.f16round is not in Node 20). */
export function f32ToF16Bits(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

export function f16BitsToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

const roundF16 = (v: number) => f16BitsToF32(f32ToF16Bits(v));

const quantizeValue = (v: number, scale: number, min: number, levels: number) =>
  scale > 0 ? Math.min(levels, Math.max(0, Math.round((v - min) / scale))) : 0;

/** Squared error of a group stored with f16-rounded (scale, min). Indexed loops: this runs ~20x per group. */
function groupError(x: Float32Array, scale: number, min: number, levels: number): number {
  let e = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    e += (quantizeValue(v, scale, min, levels) * scale + min - v) ** 2;
  }
  return e;
}

/**
 * (scale, min) of one group, f16-rounded. Start from the plain min/max range and a few shrunk ranges (clipping
 * outliers), refine each by least squares on the codes it produces (w ≈ scale·q + min), keep the best. On
 * brown-tiny this is what keeps int4 greedy decoding on HF's tokens; min/max alone flips near-ties.
 */
function fitGroup(x: Float32Array, levels: number): { scale: number; min: number } {
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < x.length; i++) { lo = Math.min(lo, x[i]); hi = Math.max(hi, x[i]); }
  let best = { scale: roundF16((hi - roundF16(lo)) / levels), min: roundF16(lo) };
  if (!(best.scale > 0)) return { scale: 0, min: roundF16(lo) };
  let bestErr = groupError(x, best.scale, best.min, levels);
  for (const shrink of [1, 0.95, 0.9, 0.85, 0.8]) {
    const mid = (hi + lo) / 2, half = ((hi - lo) / 2) * shrink;
    let min = mid - half, scale = (2 * half) / levels;
    for (let iter = 0; iter < 3; iter++) {
      let sq = 0, sqq = 0, sw = 0, sqw = 0;
      for (let i = 0; i < x.length; i++) {
        const v = x[i], q = quantizeValue(v, scale, min, levels);
        sq += q; sqq += q * q; sw += v; sqw += q * v;
      }
      const det = x.length * sqq - sq * sq;
      if (det <= 0) break;
      const s2 = (x.length * sqw - sq * sw) / det;
      if (!(s2 > 0)) break;
      min = (sqq * sw - sq * sqw) / det;
      scale = s2;
      const cand = { scale: roundF16(scale), min: roundF16(min) };
      const err = groupError(x, cand.scale, cand.min, levels);
      if (err < bestErr) { best = cand; bestErr = err; }
    }
  }
  return best;
}

/** Pack W (N, K) row-major f32 into `format`. */
export function packWeight(w: Float32Array, N: number, K: number, format: WeightFormat): Uint32Array<ArrayBuffer> {
  if (w.length !== N * K) throw new RangeError(`packWeight: ${w.length} values for a (${N}, ${K}) weight`);
  if (format === 'f32') return new Uint32Array(w.slice().buffer);
  if (format === 'f16') {
    const K2 = Math.ceil(K / 2), out = new Uint32Array(N * K2);
    for (let n = 0; n < N; n++) {
      for (let j = 0; j < K2; j++) {
        const lo = f32ToF16Bits(w[n * K + 2 * j]);
        const hi = 2 * j + 1 < K ? f32ToF16Bits(w[n * K + 2 * j + 1]) : 0;
        out[n * K2 + j] = lo | (hi << 16);
      }
    }
    return out;
  }
  const bits = format === 'q4' ? 4 : 8, levels = (1 << bits) - 1, perWord = 32 / bits;
  const G = groupsPerRow(K), wordsPerGroup = GROUP / perWord;
  const out = new Uint32Array(packedWords(format, N, K));
  const scaleBase = N * G * wordsPerGroup;
  for (let n = 0; n < N; n++) {
    for (let g = 0; g < G; g++) {
      const k0 = g * GROUP, k1 = Math.min(K, k0 + GROUP);
      const group = w.subarray(n * K + k0, n * K + k1);
      const { scale, min } = fitGroup(group, levels);
      out[scaleBase + n * G + g] = f32ToF16Bits(scale) | (f32ToF16Bits(min) << 16);
      for (let i = 0; i < group.length; i++) {
        const q = quantizeValue(group[i], scale, min, levels);
        const word = (n * G + g) * wordsPerGroup + Math.floor(i / perWord);
        out[word] = (out[word] | (q << (bits * (i % perWord)))) >>> 0;
      }
    }
  }
  return out;
}

/** The f32 values the GPU sees for a packed weight: the CPU reference runs on these. */
export function unpackWeight(p: Uint32Array, N: number, K: number, format: WeightFormat): Float32Array {
  if (format === 'f32') return new Float32Array(p.slice().buffer);
  const out = new Float32Array(N * K);
  if (format === 'f16') {
    const K2 = Math.ceil(K / 2);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) out[n * K + k] = f16BitsToF32((p[n * K2 + (k >> 1)] >>> (16 * (k & 1))) & 0xffff);
    return out;
  }
  const bits = format === 'q4' ? 4 : 8, mask = (1 << bits) - 1, perWord = 32 / bits;
  const G = groupsPerRow(K), wordsPerGroup = GROUP / perWord, scaleBase = N * G * wordsPerGroup;
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const g = Math.floor(k / GROUP), i = k % GROUP;
      const sm = p[scaleBase + n * G + g];
      const scale = f16BitsToF32(sm & 0xffff), min = f16BitsToF32(sm >>> 16);
      const q = (p[(n * G + g) * wordsPerGroup + Math.floor(i / perWord)] >>> (bits * (i % perWord))) & mask;
      out[n * K + k] = Math.fround(Math.fround(q * scale) + min);
    }
  }
  return out;
}
