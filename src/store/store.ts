// What the runtime reads a packed model through: the same small async interface over a folder (Node) and
// browser storage. A backend only supplies byte ranges of named files; PackedStore does the rest (lookup,
// u32 views, optional SHA-256 checks), and storeSource turns a store into pack.ts's WeightSource.
import { ModelLoadError } from '../errors.ts';
import type { WeightSource } from '../format/pack.ts';
import { expertRecordName, manifestConfig, sha256Hex, type Manifest, type RecordEntry } from './manifest.ts';

export interface ModelStore {
  manifest(): Promise<Manifest>;
  /** One dense tensor's packed words (src/format/pack.ts packDense). */
  readDense(name: string, verify?: boolean): Promise<Uint32Array<ArrayBuffer>>;
  /** One routed expert's record [gate_up | down] (src/format/pack.ts packExpert). */
  readExpert(layer: number, expert: number, verify?: boolean): Promise<Uint32Array<ArrayBuffer>>;
  /** A tokenizer file, whole; always checked against its SHA-256 (they are small). */
  readFile(name: string): Promise<Uint8Array<ArrayBuffer>>;
  close(): Promise<void>;
  /** False for an expert not stored yet (a partial IdbModelStore fetches it when read); absent: every one is. */
  hasExpert?(layer: number, expert: number): boolean;
}

/** Where a packed model is written: data files in pieces at given offsets, then the manifest. */
export interface StoreWriter {
  /** Store `bytes` at `offset` of `file`. Each piece is later read back as exactly this range. */
  write(file: string, offset: number, bytes: Uint8Array): Promise<void>;
  /** Make every write durable, then store manifest.json; a store without one is an unfinished conversion. */
  commit(manifest: Manifest): Promise<void>;
}

export abstract class PackedStore implements ModelStore {
  private readonly denseByName: Map<string, RecordEntry>;

  protected constructor(protected readonly m: Manifest) {
    this.denseByName = new Map(m.dense.map((d) => [d.name, d]));
  }

  /** Exactly `length` bytes at `offset` of the named file. */
  protected abstract readRange(file: string, offset: number, length: number): Promise<Uint8Array<ArrayBuffer>>;
  abstract close(): Promise<void>;

  /** Check every record read against its SHA-256, whatever `verify` says (a store whose copy can rot: IndexedDB). */
  protected verifyReads = false;

  /**
   * A record read back wrong (`why` says how): return its right bytes or throw. Here it throws ModelLoadError; a
   * store that can fetch the record again (IdbModelStore) overrides this.
   */
  protected async damaged(r: RecordEntry, what: string, why: string): Promise<Uint8Array<ArrayBuffer>> {
    throw new ModelLoadError(`${r.file}: ${what} ${why}. The packed model is damaged: convert or download it again.`, r.file, what);
  }

  async manifest(): Promise<Manifest> {
    return this.m;
  }

  async readDense(name: string, verify = false): Promise<Uint32Array<ArrayBuffer>> {
    const r = this.denseByName.get(name);
    if (!r) throw new ModelLoadError(`the packed model has no dense tensor "${name}". Convert the checkpoint again with \`q3n convert\`.`, undefined, name);
    return words(await this.readRecord(r, name, verify));
  }

  async readExpert(layer: number, expert: number, verify = false): Promise<Uint32Array<ArrayBuffer>> {
    const r = this.m.experts[layer]?.[expert];
    if (!r) throw new RangeError(`expert (${layer}, ${expert}) is outside the model's ${this.m.experts.length} layers x ${this.m.experts[0]?.length} experts`);
    return words(await this.readRecord(r, expertRecordName(layer, expert), verify));
  }

  async readFile(name: string): Promise<Uint8Array<ArrayBuffer>> {
    const f = this.m.files.find((f) => f.name === name);
    if (!f) throw new ModelLoadError(`the packed model has no file "${name}". Convert it again from a checkpoint folder that has ${name}.`, name);
    return this.readRecord({ file: f.name, offset: 0, bytes: f.bytes, sha256: f.sha256 }, name, true);
  }

  private async readRecord(r: RecordEntry, what: string, verify: boolean): Promise<Uint8Array<ArrayBuffer>> {
    const bytes = await this.readRange(r.file, r.offset, r.bytes);
    if (bytes.length !== r.bytes) return this.damaged(r, what, `is truncated (read ${bytes.length} of ${r.bytes} bytes)`);
    if ((verify || this.verifyReads) && (await sha256Hex(bytes)) !== r.sha256) return this.damaged(r, what, `(bytes ${r.offset}..${r.offset + r.bytes}) fails its SHA-256 check`);
    return bytes;
  }
}

/** A u32 view of a record; copies only when the bytes are not a whole, aligned buffer. */
function words(b: Uint8Array<ArrayBuffer>): Uint32Array<ArrayBuffer> {
  const whole = b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b : b.slice();
  return new Uint32Array(whole.buffer);
}

/** A packed model as pack.ts's WeightSource, for loadGpuWeights. `verify` checks every record's SHA-256. */
export async function storeSource(store: ModelStore, opts: { verify?: boolean } = {}): Promise<WeightSource> {
  const m = await store.manifest();
  const byName = new Map(m.dense.map((d) => [d.name, d]));
  return {
    config: manifestConfig(m),
    quant: m.quant,
    mtp: m.mtp === true,
    dense: async (t) => {
      const d = byName.get(t.name);
      if (!d || d.format !== t.format || d.N !== t.N || d.K !== t.K) {
        throw new ModelLoadError(`the packed model's "${t.name}" is not the (${t.N}, ${t.K}) ${t.format} tensor the runtime asks for. Convert the checkpoint again.`, undefined, t.name);
      }
      return store.readDense(t.name, opts.verify);
    },
    expert: (layer, expert) => store.readExpert(layer, expert, opts.verify),
    expertStored: store.hasExpert && ((layer, expert) => store.hasExpert!(layer, expert)),
  };
}
