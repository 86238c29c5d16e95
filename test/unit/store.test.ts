// The packed model store: byte-for-byte equal to pack.ts, strict manifest validation, SHA-256 verification.
import { PIECE_BYTES, recordEntries, recordKeys } from '../../src/store/browser.ts';
import { cp, mkdir, mkdtemp, open, readFile, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../src/checkpoint/checkpoint.ts';
import { nodeFileSet } from '../../src/checkpoint/node-files.ts';
import { ModelLoadError } from '../../src/errors.ts';
import { checkpointSource, QUANT_F32, QUANT_INT4, type QuantConfig } from '../../src/format/pack.ts';
import { convertCheckpoint } from '../../src/store/convert.ts';
import { MANIFEST, parseManifest } from '../../src/store/manifest.ts';
import { NodeFileStore, NodeStoreWriter } from '../../src/store/node.ts';
import { storeSource } from '../../src/store/store.ts';
import { locatePreset } from '../helpers/fixtures.ts';
import { expectSameSource } from '../helpers/store.ts';

const tiny = locatePreset('tiny')!;
const TOKENIZER = JSON.stringify({ model: { type: 'BPE', vocab: { a: 0 } }, note: 'not a real tokenizer: only its bytes matter here' });
let root: string, ckptDir: string, ckpt: Checkpoint;

/** Convert the tiny fixture (plus a tokenizer.json beside it) into a fresh folder. */
async function convertTiny(quant: QuantConfig, name: string): Promise<string> {
  const dir = join(root, name);
  await convertCheckpoint(ckpt, await NodeStoreWriter.create(dir), quant);
  return dir;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'q3n-store-'));
  ckptDir = join(root, 'ckpt');
  await cp(join(tiny.dir, 'config.json'), join(ckptDir, 'config.json'), { recursive: true });
  await symlink(join(tiny.dir, 'model.safetensors'), join(ckptDir, 'model.safetensors'));
  await writeFile(join(ckptDir, 'tokenizer.json'), TOKENIZER);
  ckpt = await Checkpoint.open(nodeFileSet(ckptDir));
});
afterAll(() => rm(root, { recursive: true, force: true }));

describe('packed model store', () => {
  for (const [label, quant] of [['f32', QUANT_F32], ['int4', QUANT_INT4]] as const) {
    it(`holds exactly pack.ts's ${label} tensors and records, and storeSource equals checkpointSource`, async () => {
      const store = await NodeFileStore.open(await convertTiny(quant, label));
      try {
        await expectSameSource(await storeSource(store, { verify: true }), checkpointSource(ckpt, quant));
        const m = await store.manifest();
        expect(m.files.map((f) => f.name)).toEqual(['tokenizer.json']);
        expect(new TextDecoder().decode(await store.readFile('tokenizer.json'))).toBe(TOKENIZER);
        for (const d of m.dense) expect(d.offset % 256).toBe(0);
        expect(m.experts[2][5]).toMatchObject({ file: 'experts-L002.bin', offset: 5 * m.experts[2][5].bytes });
      } finally {
        await store.close();
      }
    });
  }

  it('splits dense shards at the shard size, one tensor never across two', async () => {
    const dir = join(root, 'shards'), shardBytes = 4096;
    await convertCheckpoint(ckpt, await NodeStoreWriter.create(dir), QUANT_INT4, undefined, shardBytes);
    const store = await NodeFileStore.open(dir);
    try {
      const m = await store.manifest();
      const shards = m.data.filter((f) => f.name.startsWith('dense-'));
      expect(shards.length).toBeGreaterThan(5);
      for (const f of shards) {
        const inside = m.dense.filter((d) => d.file === f.name);
        expect(f.bytes <= shardBytes || inside.length === 1, f.name).toBe(true);
        expect(f.bytes).toBe(Math.max(...inside.map((d) => d.offset + d.bytes)));
      }
      expect(m.dense.find((d) => d.name === 'embed')).toMatchObject({ file: 'dense-000.bin', offset: 0 }); // 36,864 bytes: alone
      expect(m.dense.find((d) => d.name === 'L0.input_norm')).toMatchObject({ file: 'dense-001.bin', offset: 0 });
      await expectSameSource(await storeSource(store, { verify: true }), checkpointSource(ckpt, QUANT_INT4));
    } finally {
      await store.close();
    }
  });
});

describe('manifest validation', () => {
  let good: string;
  beforeAll(async () => {
    good = await readFile(join(await convertTiny(QUANT_INT4, 'valid'), MANIFEST), 'utf8');
  });
  const edited = (edit: (m: any) => void) => {
    const m = JSON.parse(good);
    edit(m);
    return JSON.stringify(m);
  };
  const rejects = (text: string, message: RegExp) => {
    let err: unknown;
    try {
      parseManifest(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toMatch(/convert/i); // says what to do
  };

  it('accepts what the converter wrote: tiny\'s 4 layers and its MTP layer as layer 4', () => {
    const m = parseManifest(good);
    expect(m.mtp).toBe(true);
    expect(m.experts.length).toBe(5);
    expect(m.dense.map((d) => d.name).filter((n) => n.startsWith('mtp.') || n.startsWith('L4.'))).toEqual([
      'mtp.pre_fc_norm_embedding', 'mtp.pre_fc_norm_hidden', 'mtp.fc', 'L4.input_norm', 'L4.qkv_proj', 'L4.q_norm', 'L4.k_norm', 'L4.o_proj',
      'L4.post_norm', 'L4.router', 'L4.shared_gate_up', 'L4.shared_down', 'mtp.norm',
    ]);
  });
  it('rejects an MTP layer the flag does not announce, or a flag without it', () => {
    rejects(edited((m) => delete m.mtp), /dense has 58 entries; the config allows at most 45/);
    rejects(edited((m) => (m.mtp = 'yes')), /mtp is "yes", not true or false/);
  });
  it('rejects truncated JSON', () => rejects(good.slice(0, good.length >> 1), /not valid JSON/));
  it('rejects an unknown version and a foreign format', () => {
    rejects(edited((m) => (m.version = 2)), /version 2/);
    rejects(edited((m) => (m.format = 'gguf')), /not a packed Qwen3-Next/);
  });
  it('rejects a record past the end of its file', () => {
    rejects(edited((m) => (m.experts[1][3].offset = m.data.find((f: any) => f.name === 'experts-L001.bin').bytes - 4)), /past the end of experts-L001.bin/);
    rejects(edited((m) => (m.data[0].bytes -= 1)), /past the end of dense-000.bin/);
  });
  it('rejects file names that are not plain names', () => {
    rejects(edited((m) => (m.data[0].name = '../dense-000.bin')), /not a new plain file name/);
    rejects(edited((m) => (m.dense[0].file = '../dense-000.bin')), /not a listed data file/);
    rejects(edited((m) => (m.files[0].name = '/etc/passwd')), /not a plain file name/);
    rejects(edited((m) => (m.data[1].name = 'manifest.json')), /not a new plain file name/);
    for (const name of ['https://evil.example/x', 'a\\b', 'C:x', 'a\u0000b', '.hidden', 'NUL', 'con.bin', '%2e%2e']) {
      rejects(edited((m) => (m.data[0].name = name)), /not a new plain file name/);
    }
  });
  it('rejects absurd sizes and counts', () => {
    rejects(edited((m) => (m.data[0].bytes = 1e18)), /not a byte count/);
    rejects(edited((m) => (m.experts[0][0].bytes = 2 ** 40)), /the config implies/);
    rejects(edited((m) => (m.experts[0][0].offset = -256)), /not a byte count/);
    rejects(edited((m) => (m.dense[3].N = 1e9)), /config and quant imply/);
    rejects(edited((m) => m.experts[0].push(m.experts[0][0])), /at most 16/);
    rejects(edited((m) => (m.config.num_experts = 100000)), /"num_experts" must be a positive integer of at most 4096/);
    rejects(edited((m) => (m.quant.experts = 'q2')), /quant.experts/);
    rejects(edited((m) => (m.dense[0].sha256 = 'x')), /sha256/);
    rejects(edited((m) => Object.assign(m.config, { moe_intermediate_size: 65536, hidden_size: 8192 })), /expert records of \d+ bytes, over the limit of 134217728/);
    rejects(edited((m) => (m.experts[2][1].offset = m.experts[2][0].offset)), /L2.E1 overlaps L2.E0 in experts-L002.bin/);
  });
  it('converts over an old packed model, never into a folder with a foreign manifest.json', async () => {
    await mkdir(join(root, 'foreign'));
    await convertTiny(QUANT_F32, 'valid-again');
    await NodeStoreWriter.create(join(root, 'valid-again')); // a conversion that dies here leaves no manifest
    await expect(stat(join(root, 'valid-again', MANIFEST))).rejects.toThrow(/ENOENT/);
    await convertTiny(QUANT_INT4, 'valid-again');
    expect(parseManifest(await readFile(join(root, 'valid-again', MANIFEST), 'utf8')).quant).toEqual(QUANT_INT4);
    await writeFile(join(root, 'foreign', MANIFEST), '{"cases": []}');
    await expect(NodeStoreWriter.create(join(root, 'foreign'))).rejects.toThrow(/not a packed model's/);
    expect(await readFile(join(root, 'foreign', MANIFEST), 'utf8')).toBe('{"cases": []}');
  });
  it('refuses an unfinished or truncated store when opening it', async () => {
    const dir = join(root, 'valid');
    await truncate(join(dir, 'experts-L003.bin'), 1000);
    await expect(NodeFileStore.open(dir)).rejects.toThrow(/experts-L003.bin: 1000 bytes, the manifest says/);
    await rm(join(dir, MANIFEST));
    await expect(NodeFileStore.open(dir)).rejects.toThrow(/conversion did not finish/);
  });
});

describe('verify', () => {
  it('catches one corrupted byte in an expert record and in a dense tensor, naming the record', async () => {
    const dir = await convertTiny(QUANT_INT4, 'corrupt');
    const flip = async (file: string, at: number) => {
      const fh = await open(join(dir, file), 'r+');
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, at);
      b[0] ^= 0x10;
      await fh.write(b, 0, 1, at);
      await fh.close();
    };
    const m = parseManifest(await readFile(join(dir, MANIFEST), 'utf8'));
    const rec = m.experts[1][5], inProj = m.dense.find((d) => d.name === 'L2.in_proj')!;
    await flip(rec.file, rec.offset + 100);
    await flip(inProj.file, inProj.offset + inProj.bytes - 1);
    const store = await NodeFileStore.open(dir);
    try {
      const err = await store.readExpert(1, 5, true).catch((e) => e);
      expect(err).toBeInstanceOf(ModelLoadError);
      expect(err.tensor).toBe('L1.E5');
      expect(err.message).toMatch(/L1.E5 .* fails its SHA-256 check/);
      await expect(store.readDense('L2.in_proj', true)).rejects.toThrow(/L2.in_proj .* fails its SHA-256/);
      await store.readExpert(1, 5); // unverified reads pass the damage through
      await store.readExpert(1, 4, true);
      await store.readExpert(1, 6, true);
      const src = await storeSource(store, { verify: true });
      await expect(src.expert(1, 5)).rejects.toBeInstanceOf(ModelLoadError);
    } finally {
      await store.close();
    }
  });
});

describe('IndexedDB record layout (src/store/browser.ts)', () => {
  it('stores a record over the piece size as pieces that join back to the same bytes, under ~128 MB each', async () => {
    expect(PIECE_BYTES).toBeLessThanOrEqual(64 << 20);
    expect(recordKeys('L0.E1', 1000, 4096)).toEqual(['rec:L0.E1']);
    expect(recordKeys('embed', 10_000, 4096)).toEqual(['rec:embed#0', 'rec:embed#1', 'rec:embed#2']);
    expect(recordKeys('embed', 350e6)).toHaveLength(6); // the real model's int8 embed_tokens
    const bytes = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 31) & 255);
    const entries = recordEntries('embed', 'abc', bytes, 4096);
    expect(entries.map(([k]) => k)).toEqual(['rec:embed#0', 'rec:embed#1', 'rec:embed#2', 'ok:embed']);
    const parts = entries.slice(0, 3).map(([, v]) => v as Blob);
    expect(parts.map((b) => b.size)).toEqual([4096, 4096, 1808]);
    expect(new Uint8Array(await new Blob(parts).arrayBuffer())).toEqual(bytes);
  });
});
