// The packed model format: what `q3n convert` writes and the runtime reads, in Node (a folder) and in the
// browser (IndexedDB / OPFS keep the same names, offsets and bytes).
//
// A packed model is a folder of plain-named files:
//   manifest.json        written LAST: a folder without it is an unfinished conversion
//   tokenizer.json, tokenizer_config.json, generation_config.json, chat_template.jinja   copied whole, when present
//   dense-000.bin ...    dense tensors exactly as src/format/pack.ts packs them (u32 words, little-endian), in
//                        densePlan order; shards of <= 64 MiB (a bigger tensor gets a shard of its own), each
//                        tensor at a 256-byte aligned offset, zero padding between
//   experts-L000.bin ... one file per layer (and one for the MTP layer's, layer L, when there is one): the
//                        records of experts 0..E-1 back to back; a record is
//                        packExpert's [gate_up | down], expertLayout(config, quant.experts).words * 4 bytes
//                        (~1.7 MB at int4 for the real model: one read, far under browsers' per-value limits)
//
// manifest.json:
//   { "format": "qwen3-next-webgpu.packed", "version": 1,
//     "config": { ...config.json as it came... }, "quant": { "linear", "experts", "embed", "lmHead" },
//     "files":   [ { "name": "tokenizer.json", "bytes", "sha256" } ],
//     "data":    [ { "name": "dense-000.bin", "bytes" } ],                      every data file and its size
//     "dense":   [ { "name": "L0.in_proj", "format", "N", "K", "file", "offset", "bytes", "sha256" } ],
//     "experts": [ [ { "file", "offset", "bytes", "sha256" }, ...E ], ...L ],  indexed [layer][expert]
//     "mtp": true }   optional: the MTP layer is packed (densePlan(config, quant, true); experts has L + 1 layers)
//
// parseManifest trusts nothing: the dense list must be densePlan(config, quant, mtp) exactly, every size must be
// the one the config implies and under MANIFEST_LIMITS, every record must lie inside its file without overlapping
// another, and names must be plain file names (isPlainName), so no store can be led outside its folder or URL.
import { parseConfig, showValue, type Qwen3NextConfig } from '../config.ts';
import { ConfigError, ModelLoadError } from '../errors.ts';
import { densePlan, expertLayout, packedLayers, type QuantConfig, type TensorPlan } from '../format/pack.ts';
import { packedWords, type WeightFormat } from '../quant/formats.ts';

export const FORMAT = 'qwen3-next-webgpu.packed';
export const VERSION = 1;
export const MANIFEST = 'manifest.json';
export const DENSE_SHARD_BYTES = 64 << 20;
export const DENSE_ALIGN = 256;
/** Files copied from the checkpoint folder when present (src/tokenizer/node.ts reads the same four). */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'chat_template.jinja'];

// Limits a packed model must fit, on top of config.ts's CONFIG_LIMITS. The real model: 48 layers x 512 experts,
// a manifest of ~3.5 MB, int4 expert records of 1.9 MB, an int8 embedding of 350 MB, ~45 GB in all.
export const MANIFEST_LIMITS = {
  manifestChars: 64 << 20,
  /** An expert record is one browser-storage value and one read per cache miss: within browsers' ~128 MB per-value comfort. */
  expertRecordBytes: 128 << 20,
  /** A dense tensor is one GPU buffer (the real model's f32 embedding: 1.2 GB). */
  denseTensorBytes: 2 ** 32,
  /** Tokenizer files (the real tokenizer.json: 11 MB). */
  fileBytes: 64 << 20,
  /** Every file of the model together. */
  modelBytes: 2 ** 40,
};

export interface StoredFile {
  name: string;
  bytes: number;
  sha256: string;
}

export interface DataFile {
  name: string;
  bytes: number;
}

/** One contiguous byte range of a data file. */
export interface RecordEntry {
  file: string;
  offset: number;
  bytes: number;
  sha256: string;
}

export interface DenseEntry extends TensorPlan, RecordEntry {}

export interface Manifest {
  format: typeof FORMAT;
  version: typeof VERSION;
  config: Record<string, unknown>;
  quant: QuantConfig;
  files: StoredFile[];
  data: DataFile[];
  dense: DenseEntry[];
  experts: RecordEntry[][];
  /** The MTP layer is packed too (absent: no). */
  mtp?: boolean;
}

export const denseShardName = (i: number) => `dense-${String(i).padStart(3, '0')}.bin`;
export const expertFileName = (layer: number) => `experts-L${String(layer).padStart(3, '0')}.bin`;
export const expertRecordName = (layer: number, expert: number) => `L${layer}.E${expert}`;

/** Lower-case hex SHA-256 through WebCrypto (Node 20 and browsers alike). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * A name that can only mean a file in the model folder itself, on every file system and as a relative URL: letters,
 * digits, `_ . -` only (no `/`, `\\`, `:`, `%`, NUL, so no `..`, absolute path, drive or scheme), no leading `.`,
 * not a Windows device name (`NUL`, `CON.txt`).
 */
export const isPlainName = (s: unknown): s is string =>
  typeof s === 'string' && s.length <= 128 && /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(s) && !/^(con|prn|aux|nul|com\d|lpt\d)(\.|$)/i.test(s);

const FORMATS: readonly WeightFormat[] = ['f32', 'f16', 'q4', 'q8'];

export function parseManifest(text: string): Manifest {
  const fail = (why: string, tensor?: string): never => {
    throw new ModelLoadError(`${MANIFEST}: ${why}. The packed model is damaged or unfinished: convert it again with \`q3n convert\`.`, MANIFEST, tensor);
  };
  if (text.length > MANIFEST_LIMITS.manifestChars) fail(`${text.length} characters, more than any packed model needs`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    fail(`not valid JSON (${(e as Error).message})`);
  }
  const m = obj(raw, 'the manifest', fail);
  if (m.format !== FORMAT) fail(`format is ${showValue(m.format)}, not "${FORMAT}": this is not a packed Qwen3-Next model`);
  if (m.version !== VERSION) {
    throw new ModelLoadError(
      `${MANIFEST}: format version ${showValue(m.version)}; this runtime reads version ${VERSION}. Convert the checkpoint again with this version's \`q3n convert\`.`,
      MANIFEST,
    );
  }
  const rawConfig = obj(m.config, 'config', fail);
  let config: Qwen3NextConfig;
  try {
    config = parseConfig(rawConfig);
  } catch (e) {
    const why = e instanceof ConfigError ? e.message : String(e);
    throw new ConfigError(`${MANIFEST}: the packed model's ${why} Convert it again with \`q3n convert\` from the original checkpoint.`, MANIFEST, undefined, { cause: e });
  }
  const q = obj(m.quant, 'quant', fail);
  for (const k of ['linear', 'experts', 'embed', 'lmHead']) if (!FORMATS.includes(q[k] as WeightFormat)) fail(`quant.${k} is ${showValue(q[k])}, not one of ${FORMATS}`);
  const quant = { linear: q.linear, experts: q.experts, embed: q.embed, lmHead: q.lmHead } as QuantConfig;

  const files = list(m.files, TOKENIZER_FILES.length, 'files', fail).map((f, i) => {
    const e = obj(f, `files[${i}]`, fail);
    if (!isPlainName(e.name)) fail(`files[${i}] has name ${showValue(e.name)}, not a plain file name`);
    return { name: e.name as string, bytes: size(e.bytes, MANIFEST_LIMITS.fileBytes, `file ${e.name}`, fail), sha256: hash(e.sha256, `file ${e.name}`, fail) };
  });

  if (m.mtp !== undefined && typeof m.mtp !== 'boolean') fail(`mtp is ${showValue(m.mtp)}, not true or false`);
  const mtp = m.mtp === true, layerCount = packedLayers(config, mtp);
  // Every size below must be the one the config implies, so an absurd size cannot get past this point.
  const plan = densePlan(config, quant, mtp);
  const recordBytes = expertLayout(config, quant.experts).words * 4;
  const planBytes = plan.map((t) => packedWords(t.format, t.N, t.K) * 4);
  if (recordBytes > MANIFEST_LIMITS.expertRecordBytes) fail(`config and quant imply expert records of ${recordBytes} bytes, over the limit of ${MANIFEST_LIMITS.expertRecordBytes}`);
  const biggest = planBytes.reduce((a, b) => Math.max(a, b), 0);
  if (biggest > MANIFEST_LIMITS.denseTensorBytes) fail(`config and quant imply a dense tensor of ${biggest} bytes, over the limit of ${MANIFEST_LIMITS.denseTensorBytes}`);
  const maxDataBytes = Math.max(DENSE_SHARD_BYTES, config.numExperts * recordBytes, biggest);

  const names = new Set([MANIFEST, ...files.map((f) => f.name)]);
  if (names.size !== files.length + 1) fail('files lists a name twice, or names manifest.json');
  const data = new Map<string, number>();
  for (const [i, f] of list(m.data, plan.length + layerCount, 'data', fail).entries()) {
    const e = obj(f, `data[${i}]`, fail);
    if (!isPlainName(e.name) || names.has(e.name)) fail(`data[${i}] has name ${showValue(e.name)}, not a new plain file name`);
    names.add(e.name as string);
    data.set(e.name as string, size(e.bytes, maxDataBytes, `data file ${e.name}`, fail));
  }
  const total = [...files.map((f) => f.bytes), ...data.values()].reduce((a, b) => a + b, 0);
  if (total > MANIFEST_LIMITS.modelBytes) fail(`the files add up to ${total} bytes, over the limit of ${MANIFEST_LIMITS.modelBytes}`);

  const record = (r: unknown, what: string, bytes: number, align: number): RecordEntry => {
    const e = obj(r, what, fail);
    if (typeof e.file !== 'string' || !data.has(e.file)) fail(`${what} is in ${showValue(e.file)}, which is not a listed data file`);
    const offset = size(e.offset, maxDataBytes, `${what}'s offset`, fail);
    if (e.bytes !== bytes) fail(`${what} has ${showValue(e.bytes)} bytes; the config implies ${bytes}`);
    if (offset % align !== 0) fail(`${what} is at offset ${offset}, not a multiple of ${align}`);
    if (offset + bytes > data.get(e.file as string)!) fail(`${what} ends at byte ${offset + bytes}, past the end of ${e.file} (${data.get(e.file as string)} bytes)`);
    return { file: e.file as string, offset, bytes, sha256: hash(e.sha256, what, fail) };
  };

  const dense = list(m.dense, plan.length, 'dense', fail);
  if (dense.length !== plan.length) fail(`${dense.length} dense tensors; the config implies ${plan.length}`);
  const denseEntries = plan.map((t, i): DenseEntry => {
    const e = obj(dense[i], `dense[${i}]`, fail);
    if (e.name !== t.name || e.format !== t.format || e.N !== t.N || e.K !== t.K) {
      fail(`dense[${i}] is ${showValue([e.name, e.format, e.N, e.K])}; the config and quant imply ${JSON.stringify([t.name, t.format, t.N, t.K])}`, t.name);
    }
    return { ...t, ...record(e, `dense tensor ${t.name}`, planBytes[i], DENSE_ALIGN) };
  });

  const layers = list(m.experts, layerCount, 'experts', fail);
  if (layers.length !== layerCount) fail(`experts has ${layers.length} layers; the config has ${config.numLayers}${mtp ? ' and the MTP layer' : ''}`);
  const experts = layers.map((l, i) => {
    const recs = list(l, config.numExperts, `experts[${i}]`, fail);
    if (recs.length !== config.numExperts) fail(`experts[${i}] has ${recs.length} records; the config has ${config.numExperts} experts`);
    return recs.map((r, e) => record(r, `expert record ${expertRecordName(i, e)}`, recordBytes, 4));
  });
  const named = [
    ...denseEntries.map((d) => ({ ...d, what: `dense tensor ${d.name}` })),
    ...experts.flatMap((records, l) => records.map((r, e) => ({ ...r, what: expertRecordName(l, e) }))),
  ];
  noOverlaps(named, fail);

  return { format: FORMAT, version: VERSION, config: rawConfig, quant, files, data: [...data].map(([name, bytes]) => ({ name, bytes })), dense: denseEntries, experts, ...(mtp ? { mtp } : {}) };
}

/** The validated config of a parsed manifest. */
export const manifestConfig = (m: Manifest): Qwen3NextConfig => parseConfig(m.config);

type Fail = (why: string, tensor?: string) => never;

function obj(v: unknown, what: string, fail: Fail): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(`${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

function list(v: unknown, max: number, what: string, fail: Fail): unknown[] {
  if (!Array.isArray(v)) fail(`${what} is not a list`);
  if ((v as unknown[]).length > max) fail(`${what} has ${(v as unknown[]).length} entries; the config allows at most ${max}`);
  return v as unknown[];
}

function size(v: unknown, max: number, what: string, fail: Fail): number {
  if (!Number.isSafeInteger(v) || (v as number) < 0 || (v as number) > max) fail(`${what} is ${showValue(v)}, not a byte count in [0, ${max}]`);
  return v as number;
}

function hash(v: unknown, what: string, fail: Fail): string {
  if (typeof v !== 'string' || !/^[0-9a-f]{64}$/.test(v)) fail(`${what} has sha256 ${showValue(v)}, not 64 lower-case hex digits`);
  return v as string;
}

/** No two records share a byte (the converter never writes them so; overlap means a forged manifest). */
function noOverlaps(records: (RecordEntry & { what: string })[], fail: Fail): void {
  const sorted = records.filter((r) => r.bytes > 0).sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.offset - b.offset));
  for (let i = 1; i < sorted.length; i++) {
    const [prev, r] = [sorted[i - 1], sorted[i]];
    if (r.file === prev.file && r.offset < prev.offset + prev.bytes) fail(`${r.what} overlaps ${prev.what} in ${r.file}`);
  }
}
