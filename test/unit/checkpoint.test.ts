import { describe, expect, it } from 'vitest';
import { locatePreset, BROWN_TINY_DIR, brownTinyAvailable } from '../helpers/fixtures.ts';
import { Checkpoint } from '../../src/checkpoint/checkpoint.ts';
import { nodeFileSet } from '../../src/checkpoint/node-files.ts';
import { ConfigError, ModelLoadError } from '../../src/errors.ts';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('checkpoint reader', () => {
  it('reads every tensor the tiny fixture lists, with its shape', async () => {
    const p = locatePreset('tiny')!;
    const ckpt = await p.openCheckpoint();
    expect(ckpt.config.layerTypes).toEqual(['linear_attention', 'linear_attention', 'linear_attention', 'full_attention']);
    const w = await ckpt.read('model.layers.0.linear_attn.in_proj_qkvz.weight', [192, 64]);
    expect(w.length).toBe(192 * 64);
    expect(ckpt.names().some((n) => n.startsWith('mtp.'))).toBe(true);
  });

  it.runIf(brownTinyAvailable())('reads a sharded bf16 checkpoint with rope_parameters', async () => {
    const ckpt = await Checkpoint.open(nodeFileSet(BROWN_TINY_DIR));
    expect(ckpt.config.ropeTheta).toBe(10000);
    expect(ckpt.config.rotaryDim).toBe(16);
    expect(ckpt.info('model.embed_tokens.weight').dtype).toBe('BF16');
    const e = await ckpt.read('model.embed_tokens.weight', [4096, 256]);
    expect(Number.isFinite(e[12345])).toBe(true);
  });
});

describe('bad checkpoints give typed errors naming the file and tensor', () => {
  // A checkpoint folder assembled in a temp dir from the tiny fixture, then damaged one way.
  async function damaged(edit: (dir: string, header: Record<string, any>, data: Buffer) => Buffer | void): Promise<string> {
    const src = locatePreset('tiny')!.dir;
    const dir = mkdtempSync(join(tmpdir(), 'ckpt-'));
    copyFileSync(join(src, 'config.json'), join(dir, 'config.json'));
    const bytes = readFileSync(join(src, 'model.safetensors'));
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
    const data = bytes.subarray(8 + n);
    const custom = edit(dir, header, data);
    if (custom) writeFileSync(join(dir, 'model.safetensors'), custom);
    else {
      const h = Buffer.from(JSON.stringify(header));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(h.length));
      writeFileSync(join(dir, 'model.safetensors'), Buffer.concat([len, h, data]));
    }
    return dir;
  }
  const open = (dir: string) => Checkpoint.open(nodeFileSet(dir));

  it('truncated header', async () => {
    const dir = await damaged((_d, _h, _data) => readFileSync(join(locatePreset('tiny')!.dir, 'model.safetensors')).subarray(0, 100));
    await expect(open(dir)).rejects.toSatisfy((e: unknown) => e instanceof ModelLoadError && /model\.safetensors: not a valid safetensors file \(header length/.test((e as Error).message));
  });
  it('truncated data', async () => {
    const dir = await damaged((_d, h, data) => {
      const hb = Buffer.from(JSON.stringify(h)), len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(hb.length));
      return Buffer.concat([len, hb, data.subarray(0, data.length - 1000)]);
    });
    await expect(open(dir)).rejects.toThrow(/past the end of the file .*truncated\?/);
  });
  it('header that is not JSON', async () => {
    const dir = await damaged(() => {
      const hb = Buffer.from('{"a": nope}'), len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(hb.length));
      return Buffer.concat([len, hb]);
    });
    await expect(open(dir)).rejects.toThrow(/header is not JSON/);
  });
  it('unknown dtype names the tensor and says what to do', async () => {
    const dir = await damaged((_d, h) => { h['model.norm.weight'].dtype = 'F8_E4M3'; });
    const err = await open(dir).catch((e) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect(err.tensor).toBe('model.norm.weight');
    expect(err.message).toMatch(/dtype "F8_E4M3".*Convert the checkpoint/);
  });
  it('overlapping tensors, a header length over 100 MB, a shard outside the folder', async () => {
    const overlap = await damaged((_d, h) => { h['lm_head.weight'].data_offsets = h['model.embed_tokens.weight'].data_offsets; });
    await expect(open(overlap)).rejects.toThrow(/"model.embed_tokens.weight" overlaps "lm_head.weight"|"lm_head.weight" overlaps "model.embed_tokens.weight"/);
    const huge = await damaged(() => {
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(100_000_001n);
      return Buffer.concat([len, Buffer.from('{}')]);
    });
    await expect(open(huge)).rejects.toThrow(/header length 100000001 .*at most 100000000/);
    for (const shard of ['../model.safetensors', '/etc/passwd', 'https://evil.example/x', 'a\\b', 'C:x']) {
      const dir = await damaged((d, h) => writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { [Object.keys(h)[1]]: shard } })));
      await expect(open(dir), shard).rejects.toThrow(/not a plain file name in the checkpoint folder/);
    }
  });
  it('missing tensor', async () => {
    const dir = await damaged((_d, h) => { delete h['lm_head.weight']; });
    const ckpt = await open(dir);
    const err = await ckpt.read('lm_head.weight').catch((e) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect(err.tensor).toBe('lm_head.weight');
    expect(err.message).toMatch(/missing from the checkpoint/);
  });
  it('wrong shape for the config', async () => {
    const ckpt = await open(await damaged(() => {}));
    const err = await ckpt.read('model.norm.weight', [65]).catch((e) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect(err.message).toMatch(/model\.safetensors: tensor "model\.norm\.weight" has shape \[64\], the config implies \[65\]/);
  });
  it('a config that is not Qwen3-Next, and a missing config', async () => {
    const dir = await damaged((d) => writeFileSync(join(d, 'config.json'), JSON.stringify({ model_type: 'llama', num_hidden_layers: 2 })));
    await expect(open(dir)).rejects.toSatisfy((e: unknown) => e instanceof ConfigError && /runs "qwen3_next" checkpoints only/.test((e as Error).message));
    await expect(open(mkdtempSync(join(tmpdir(), 'empty-')))).rejects.toThrow(/no config.json/);
  });
});
