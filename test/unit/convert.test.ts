// `q3n convert` end to end: from a folder, over HTTP range requests, from the synthetic full-size-layout
// checkpoint of scripts/make-fullsize-layer.ts (at a small scale), and brown-tiny when ../shared has it.
import { spawnSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCheckpoint, syntheticConfig, checkpointTensors } from '../../scripts/make-fullsize-layer.ts';
import { Checkpoint } from '../../src/checkpoint/checkpoint.ts';
import { nodeFileSet } from '../../src/checkpoint/node-files.ts';
import { Args, UsageError } from '../../src/cli/args.ts';
import { convertCommand, hfFileBase } from '../../src/cli/convert.ts';
import { parseConfig } from '../../src/config.ts';
import { checkpointSource, expertLayout, QUANT_F32, QUANT_INT4 } from '../../src/format/pack.ts';
import { convertCheckpoint, quantForBits, QUANT_F16, QUANT_INT8 } from '../../src/store/convert.ts';
import { NodeFileStore, NodeStoreWriter } from '../../src/store/node.ts';
import { storeSource } from '../../src/store/store.ts';
import { BROWN_TINY_DIR, brownTinyAvailable, locatePreset, REPO_ROOT } from '../helpers/fixtures.ts';
import { expectSameSource } from '../helpers/store.ts';

const tiny = locatePreset('tiny')!;
let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'q3n-convert-'));
});
afterAll(() => rm(root, { recursive: true, force: true }));

const cli = (...argv: string[]) => convertCommand(new Args(argv, new Set()));

/** The packed folder `dir` holds exactly what pack.ts makes of `ckptDir`. */
async function expectPackedFrom(dir: string, ckptDir: string) {
  const store = await NodeFileStore.open(dir);
  try {
    const m = await store.manifest();
    await expectSameSource(await storeSource(store, { verify: true }), checkpointSource(await Checkpoint.open(nodeFileSet(ckptDir)), m.quant));
  } finally {
    await store.close();
  }
}

describe('q3n convert', () => {
  it('maps --bits to quant configs and refuses others', async () => {
    expect([4, 8, 16, 32].map(quantForBits)).toEqual([QUANT_INT4, QUANT_INT8, QUANT_F16, QUANT_F32]);
    await expect(cli('--model', tiny.dir, '--out', join(root, 'x'), '--bits', '3')).rejects.toBeInstanceOf(UsageError);
    await expect(cli('--model', tiny.dir, '--out', tiny.dir)).rejects.toBeInstanceOf(UsageError);
  });

  it('resolves Hugging Face repo URLs to their file base', () => {
    expect(hfFileBase('https://huggingface.co/Qwen/Qwen3-Next-80B-A3B-Instruct')).toBe('https://huggingface.co/Qwen/Qwen3-Next-80B-A3B-Instruct/resolve/main/');
    expect(hfFileBase('https://huggingface.co/Qwen/Qwen3-Next-80B-A3B-Instruct/tree/v1')).toBe('https://huggingface.co/Qwen/Qwen3-Next-80B-A3B-Instruct/resolve/v1/');
    expect(hfFileBase('https://huggingface.co/Qwen/X/resolve/main/')).toBe('https://huggingface.co/Qwen/X/resolve/main/');
    expect(hfFileBase('http://127.0.0.1:8000/models/x')).toBe('http://127.0.0.1:8000/models/x/');
  });

  for (const bits of ['8', '16']) {
    it(`converts a folder at --bits ${bits}`, async () => {
      const out = join(root, `tiny-${bits}`);
      await cli('--model', tiny.dir, '--out', out, '--bits', bits);
      await expectPackedFrom(out, tiny.dir);
    });
  }

  it('keeps the MTP layer (mtp.*) when the checkpoint has it: its tensors after lm_head, its experts as layer L', async () => {
    for (const [preset, mtp] of [['tiny', true], ['yarn', false]] as const) {
      const out = join(root, `mtp-${preset}`), dir = locatePreset(preset)!.dir;
      await cli('--model', dir, '--out', out, '--bits', '8');
      const store = await NodeFileStore.open(out);
      const m = await store.manifest();
      await store.close();
      expect(m.mtp ?? false, preset).toBe(mtp);
      expect(m.experts.length, preset).toBe(4 + (mtp ? 1 : 0));
      expect(m.dense.some((d) => d.name === 'mtp.fc'), preset).toBe(mtp);
      if (mtp) await expectPackedFrom(out, dir);
    }
  });

  it('converts over HTTP range requests', async () => {
    const server = await serveFolder(tiny.dir);
    try {
      const out = join(root, 'tiny-http');
      await cli('--model', `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, '--out', out);
      await expectPackedFrom(out, tiny.dir);
    } finally {
      server.close();
    }
  });
});

describe('scripts/make-fullsize-layer.ts', () => {
  it('has the real model config and shapes', () => {
    const raw = syntheticConfig(4), c = parseConfig(raw);
    expect([c.hiddenSize, c.vocabSize, c.numExperts, c.moeIntermediateSize, c.sharedExpertIntermediateSize]).toEqual([2048, 151936, 512, 512, 512]);
    expect([c.linearNumKeyHeads, c.linearNumValueHeads, c.linearKeyHeadDim, c.numAttentionHeads, c.numKeyValueHeads, c.headDim]).toEqual([16, 32, 128, 16, 2, 256]);
    expect(c.layerTypes).toEqual(['linear_attention', 'linear_attention', 'linear_attention', 'full_attention']);
    const bytes = checkpointTensors(raw as Record<string, number>, c.layerTypes).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1) * 2, 0);
    expect(bytes / 1e9).toBeCloseTo(14.5, 0); // 4 layers of 3.2 GB experts + 1.2 GB of embed/lm_head, bf16
    expect(expertLayout(c, 'q4').words * 4).toBe(1_966_080); // one int4 expert record
  });

  it('writes a sharded bf16 checkpoint that converts exactly (small scale)', async () => {
    const dir = join(root, 'synthetic'), out = join(root, 'synthetic-int4');
    const { shards } = await makeCheckpoint(dir, { layers: 4, small: true, maxShardBytes: 100_000 });
    expect(shards.length).toBeGreaterThan(3);
    const ckpt = await Checkpoint.open(nodeFileSet(dir));
    expect(ckpt.info('model.layers.3.self_attn.q_proj.weight')).toMatchObject({ dtype: 'BF16', shape: [256, 64] });
    expect(ckpt.has('mtp.fc.weight')).toBe(true);
    const w = await ckpt.read('model.layers.0.mlp.experts.7.down_proj.weight');
    expect(w.every((v) => Math.abs(v) >= 2 ** -9 && Math.abs(v) < 2 ** -5)).toBe(true);
    expect(new Set(w).size).toBeGreaterThan(w.length / 4);
    await convertCheckpoint(ckpt, await NodeStoreWriter.create(out), QUANT_INT4);
    await expectPackedFrom(out, dir);
  });

  it('runs as a script', async () => {
    const dir = join(root, 'script');
    const r = spawnSync('npx', ['tsx', 'scripts/make-fullsize-layer.ts', '--small', '--layers', '1', '--out', dir], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/1 layers, 1 shards/);
    expect(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')).layer_types).toEqual(['linear_attention']);
  });
});

describe.runIf(brownTinyAvailable())('brown-tiny', () => {
  it('converts the sharded bf16 checkpoint at int4', async () => {
    const out = join(root, 'brown-int4');
    const t0 = performance.now();
    const m = await convertCheckpoint(await Checkpoint.open(nodeFileSet(BROWN_TINY_DIR)), await NodeStoreWriter.create(out), QUANT_INT4);
    const ms = performance.now() - t0;
    const bytes = m.data.reduce((n, f) => n + f.bytes, 0);
    const shards = await Promise.all(['1', '2', '3'].map((i) => stat(join(BROWN_TINY_DIR, `model-0000${i}-of-00003.safetensors`))));
    console.log(`[convert] brown-tiny bf16 (${shards.reduce((n, s) => n + s.size, 0)} bytes, 3 shards) -> int4 ${bytes} bytes in ${m.data.length} data files, ${ms.toFixed(0)} ms`);
    expect(m.files.map((f) => f.name)).toEqual(['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']);
    await expectPackedFrom(out, BROWN_TINY_DIR);
  });
});

/** A static file server with HEAD and Range support, like huggingface.co's resolve endpoint. */
function serveFolder(dir: string): Promise<Server> {
  const server = createServer(async (req, res) => {
    const path = join(dir, decodeURIComponent(new URL(req.url!, 'http://x').pathname));
    const size = await stat(path).then((s) => (s.isFile() ? s.size : -1), () => -1);
    if (size < 0) return res.writeHead(404).end();
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    const [start, end] = range ? [Number(range[1]), Math.min(size - 1, Number(range[2]))] : [0, size - 1];
    res.writeHead(range ? 206 : 200, { 'content-length': end - start + 1, 'accept-ranges': 'bytes' });
    if (req.method === 'HEAD') return res.end();
    createReadStream(path, { start, end }).pipe(res);
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}
