// Hugging Face checkpoint -> packed model (src/store/manifest.ts), one tensor at a time through pack.ts, so
// the packed words are exactly what the on-the-fly loader would upload. Only the tensors densePlan and
// packExpert read are touched (the MTP layer's `mtp.*` included, when the checkpoint has it); anything else in the
// checkpoint is skipped without being read.
import type { Checkpoint } from '../checkpoint/checkpoint.ts';
import { densePlan, expertLayout, hasMtp, packDense, packedLayers, packExpert, QUANT_F32, QUANT_INT4, type QuantConfig } from '../format/pack.ts';
import { packedWords } from '../quant/formats.ts';
import { packInline, type PackFn } from '../quant/packer.ts';
import {
  DENSE_ALIGN, DENSE_SHARD_BYTES, FORMAT, TOKENIZER_FILES, VERSION,
  denseShardName, expertFileName, sha256Hex,
  type DataFile, type DenseEntry, type Manifest, type RecordEntry, type StoredFile,
} from './manifest.ts';
import type { StoreWriter } from './store.ts';

export const QUANT_INT8: QuantConfig = { linear: 'q8', experts: 'q8', embed: 'q8', lmHead: 'q8' };
export const QUANT_F16: QuantConfig = { linear: 'f16', experts: 'f16', embed: 'f16', lmHead: 'f16' };

/** `--bits`: 4 = int4 linears and experts with int8 embeddings (QUANT_INT4), 8 = int8, 16 = f16, 32 = f32. */
export function quantForBits(bits: number): QuantConfig | undefined {
  return ({ 4: QUANT_INT4, 8: QUANT_INT8, 16: QUANT_F16, 32: QUANT_F32 } as Record<number, QuantConfig>)[bits];
}

export interface ConvertProgress {
  /** Packed bytes written so far, of `total`. */
  done: number;
  total: number;
  /** What was just written: a dense tensor's name or `L3.E17`. */
  what: string;
}

const bytesOf = (w: Uint32Array) => new Uint8Array(w.buffer, w.byteOffset, w.byteLength);

export async function convertCheckpoint(
  ckpt: Checkpoint,
  out: StoreWriter,
  quant: QuantConfig,
  onProgress: (p: ConvertProgress) => void = () => {},
  denseShardBytes = DENSE_SHARD_BYTES, // smaller only in tests
  pack: PackFn = packInline, // a thread pool's in q3n convert (src/quant/node-pool.ts)
  inFlight = 2, // experts read and packed ahead of the one being written
): Promise<Manifest> {
  const c = ckpt.config, mtp = hasMtp(ckpt), layers = packedLayers(c, mtp);
  const plan = densePlan(c, quant, mtp);
  const recordBytes = expertLayout(c, quant.experts).words * 4;
  const total = plan.reduce((n, t) => n + packedWords(t.format, t.N, t.K) * 4, 0) + layers * c.numExperts * recordBytes;
  let done = 0;
  const put = async (file: string, offset: number, bytes: Uint8Array, what: string): Promise<RecordEntry> => {
    const [sha256] = await Promise.all([sha256Hex(bytes), out.write(file, offset, bytes)]);
    done += bytes.length;
    onProgress({ done, total, what });
    return { file, offset, bytes: bytes.length, sha256 };
  };

  // Tokenizer files: small, copied whole.
  const files: StoredFile[] = [];
  for (const name of TOKENIZER_FILES) {
    if (!(await ckpt.files.exists(name))) continue;
    const src = ckpt.files.open(name);
    const bytes = await src.read(0, await src.size());
    await out.write(name, 0, bytes);
    files.push({ name, bytes: bytes.length, sha256: await sha256Hex(bytes) });
  }

  // Dense tensors in plan order, packed into shards of <= 64 MiB at 256-byte aligned offsets; a bigger tensor
  // gets a shard of its own (the real model's int8 embed_tokens and lm_head are ~350 MB each).
  const data: DataFile[] = [];
  const dense: DenseEntry[] = [];
  let shard = -1, offset = 0;
  for (const t of plan) {
    const bytes = bytesOf(await packDense(ckpt, t, pack));
    let at = Math.ceil(offset / DENSE_ALIGN) * DENSE_ALIGN;
    if (shard < 0 || at + bytes.length > denseShardBytes) {
      if (shard >= 0) data.push({ name: denseShardName(shard), bytes: offset });
      shard++;
      at = 0;
    }
    dense.push({ ...t, ...(await put(denseShardName(shard), at, bytes, t.name)) });
    offset = at + bytes.length;
  }
  data.push({ name: denseShardName(shard), bytes: offset });

  // Routed experts, one file per layer (the MTP layer's last). Up to `inFlight` records are read and packed while
  // one is hashed and written, in order.
  const experts: RecordEntry[][] = [];
  for (let layer = 0; layer < layers; layer++) {
    const file = expertFileName(layer), records: RecordEntry[] = [];
    const ahead: Promise<Uint32Array<ArrayBuffer>>[] = [];
    const start = (e: number) => {
      const p = packExpert(ckpt, layer, e, quant.experts, pack);
      p.catch(() => {}); // its error still surfaces when awaited; this keeps a failing put from orphaning it
      ahead.push(p);
    };
    for (let e = 0; e < Math.min(inFlight, c.numExperts); e++) start(e);
    for (let e = 0; e < c.numExperts; e++) {
      const rec = await ahead.shift()!;
      if (e + inFlight < c.numExperts) start(e + inFlight);
      records.push(await put(file, e * recordBytes, bytesOf(rec), `L${layer}.E${e}`));
    }
    experts.push(records);
    data.push({ name: file, bytes: c.numExperts * recordBytes });
  }

  const manifest: Manifest = { format: FORMAT, version: VERSION, config: ckpt.rawConfig, quant, files, data, dense, experts, ...(mtp ? { mtp } : {}) };
  await out.commit(manifest);
  return manifest;
}
