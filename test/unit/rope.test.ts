// The runtime's rope inverse frequencies (src/model/rope.ts), bit-exact to HF's on every fixture preset (`yarn`:
// YaRN's), and YaRN's attention factor. The CPU reference has its own copy, checked in reference.test.ts: neither is
// derived from the other.
import { describe, expect, it } from 'vitest';
import { ALL_PRESETS, locatePreset, readTensorFile } from '../helpers/fixtures.ts';
import { parseConfig, type YarnRope } from '../../src/config.ts';
import { ropeParameters } from '../../src/model/rope.ts';
import { ropeYarn } from '../../src/reference/ops.ts';
import { readFileSync } from 'node:fs';

describe('runtime rope inv_freq', () => {
  for (const name of ALL_PRESETS) {
    const p = locatePreset(name);
    it.skipIf(!p)(`${name}: equals HF's f32 inv_freq bit for bit`, async () => {
      const c = parseConfig(JSON.parse(readFileSync(`${p!.dir}/config.json`, 'utf8')));
      const hf = (await readTensorFile(`${p!.dir}/fixtures/misc.safetensors`)).get('rope_inv_freq')!.data;
      expect(Array.from(ropeParameters(c).invFreq)).toEqual(Array.from(hf));
    });
  }
  it('yarn: HF\'s scaled frequencies and attention factor 0.1 ln 4 + 1; the reference agrees', () => {
    const c = parseConfig(JSON.parse(readFileSync(`${locatePreset('yarn')!.dir}/config.json`, 'utf8')));
    const { invFreq, attentionFactor } = ropeParameters(c);
    expect(Array.from(invFreq)).toEqual([1, 0.0625, 0.0025, 0.00025].map(Math.fround)); // unscaled: 1, 0.1, 0.01, 0.001
    expect(attentionFactor).toBeCloseTo(1.13863, 5);
    expect(ropeYarn(c.ropeTheta, c.rotaryDim, c.ropeScaling as YarnRope)).toEqual({ invFreq, attentionScaling: attentionFactor });
    // the real model's recipe: factor 4 over 262,144 positions, head_dim 256, partial 0.25 (R = 64)
    const real = ropeParameters({ ropeTheta: 1e7, rotaryDim: 64, ropeScaling: { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 262144, betaFast: 32, betaSlow: 1, truncate: true } });
    const plain = ropeParameters({ ropeTheta: 1e7, rotaryDim: 64, ropeScaling: { type: 'default' } });
    expect(real.invFreq[0]).toBe(plain.invFreq[0]); // fast dims kept
    expect(real.invFreq[31]).toBe(Math.fround(1 / Math.fround(4 / plain.invFreq[31]))); // slow dims interpolated
    expect(plain.attentionFactor).toBe(1);
  });
});
