import { describe, expect, it } from 'vitest';
import { locatePreset, BROWN_TINY_DIR, brownTinyAvailable } from '../helpers/fixtures.ts';
import { Checkpoint } from '../../src/checkpoint/checkpoint.ts';
import { nodeFileSet } from '../../src/checkpoint/node-files.ts';

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
