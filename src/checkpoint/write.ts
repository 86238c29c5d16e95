// Write a safetensors file (f32 / i32 tensors): the CLI's `--out` and test dumps.
export interface OutTensor {
  name: string;
  shape: number[];
  data: Float32Array | Int32Array;
}

export function encodeSafetensors(tensors: OutTensor[], metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new RangeError(`${t.name}: shape [${t.shape}] holds ${n} values, data has ${t.data.length}`);
    header[t.name] = { dtype: t.data instanceof Float32Array ? 'F32' : 'I32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const raw = new TextEncoder().encode(JSON.stringify(header));
  const head = new Uint8Array(Math.ceil(raw.length / 8) * 8).fill(0x20); // pad with spaces: data starts 8-byte aligned
  head.set(raw);
  const out = new Uint8Array(8 + head.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let o = 8 + head.length;
  for (const t of tensors) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), o);
    o += t.data.byteLength;
  }
  return out;
}
