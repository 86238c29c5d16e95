// safetensors: an 8-byte little-endian header length N, N bytes of JSON, then raw tensor bytes.
// The header is validated completely before any tensor is read: every error names the file and tensor.
import { ModelLoadError } from '../errors.ts';
import type { ByteSource } from './source.ts';
import { f16BitsToF32 } from '../quant/formats.ts';
import { showValue } from '../config.ts';

export type DType = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'I8' | 'U8' | 'U32';
const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8, I8: 1, U8: 1, U32: 4 };
export const FLOAT_DTYPES: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16']);

/** The safetensors crate's own header limit (100 MB); real 4 GB shards have headers of a few hundred KB. */
export const MAX_HEADER_BYTES = 100_000_000;
/** More dimensions than any tensor has; a bound on what a header may make us iterate. */
const MAX_RANK = 16;

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute byte offset in the file and byte length. */
  offset: number;
  byteLength: number;
}

export interface SafetensorsHeader {
  file: string;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

export async function readSafetensorsHeader(src: ByteSource): Promise<SafetensorsHeader> {
  const file = src.name;
  const bad = (why: string, tensor?: string) =>
    new ModelLoadError(`${file}: not a valid safetensors file (${why}). Re-download or re-export the checkpoint.`, file, tensor);
  const size = await src.size();
  if (size < 8) throw bad(`only ${size} bytes, shorter than the 8-byte header length`);
  const lenBytes = await src.read(0, 8);
  const n = Number(new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true));
  if (n < 2 || n > MAX_HEADER_BYTES || 8 + n > size) throw bad(`header length ${n} does not fit a file of ${size} bytes (at most ${MAX_HEADER_BYTES})`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await src.read(8, n)));
  } catch (e) {
    throw bad(`header is not JSON: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad('header is not a JSON object');
  const dataStart = 8 + n;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry) || !Object.values(entry).every((v) => typeof v === 'string')) {
        throw bad('__metadata__ is not a map of strings');
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    if (typeof entry !== 'object' || entry === null) throw bad('entry is not an object', name);
    const { dtype, shape, data_offsets } = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype)) {
      throw new ModelLoadError(
        `${file}: tensor "${name}" has dtype ${showValue(dtype)}, which this runtime cannot read (F32, F16, BF16, I32, I64, I8, U8, U32). Convert the checkpoint to bf16 or f32.`,
        file,
        name,
      );
    }
    if (!Array.isArray(shape) || shape.length > MAX_RANK || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(`shape ${showValue(shape)} is not a list of at most ${MAX_RANK} sizes`, name);
    }
    if (!Array.isArray(data_offsets) || data_offsets.length !== 2 || !data_offsets.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(`data_offsets ${showValue(data_offsets)} is not [begin, end]`, name);
    }
    const [begin, end] = data_offsets as [number, number];
    // A product past 2^53 is inexact, but can never equal end - begin (a safe integer): it is refused below.
    const byteLength = (shape as number[]).reduce((a, b) => a * b, DTYPE_BYTES[dtype as DType]);
    if (end < begin || end - begin !== byteLength) throw bad(`"${name}" spans ${end - begin} bytes, its shape needs ${byteLength}`, name);
    if (dataStart + end > size) throw bad(`"${name}" ends at byte ${dataStart + end}, past the end of the file (${size}): truncated?`, name);
    tensors.set(name, { name, dtype: dtype as DType, shape: shape as number[], offset: dataStart + begin, byteLength });
  }
  // As the safetensors crate requires: no two tensors share a byte.
  const ranges = [...tensors.values()].filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < ranges.length; i++) {
    const [prev, t] = [ranges[i - 1], ranges[i]];
    if (t.offset < prev.offset + prev.byteLength) throw bad(`"${t.name}" overlaps "${prev.name}"`, t.name);
  }
  return { file, tensors, metadata };
}

/** Decode raw little-endian tensor bytes to f32. */
export function toFloat32(dtype: DType, bytes: Uint8Array): Float32Array {
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  switch (dtype) {
    case 'F32':
      return new Float32Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 4).slice();
    case 'BF16': {
      const src = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2);
      const out = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
    case 'F16': {
      const src = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2);
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = f16BitsToF32(src[i]);
      return out;
    }
    default:
      throw new TypeError(`toFloat32: ${dtype} is not a float dtype`);
  }
}
