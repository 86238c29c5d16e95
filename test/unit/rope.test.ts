// The runtime's rope inverse frequencies (src/model/rope.ts), bit-exact to HF's on every fixture preset. The CPU
// reference has its own copy, checked in reference.test.ts: neither is derived from the other.
import { describe, expect, it } from 'vitest';
import { ALL_PRESETS, locatePreset, readTensorFile } from '../helpers/fixtures.ts';
import { parseConfig } from '../../src/config.ts';
import { ropeInvFreq } from '../../src/model/rope.ts';
import { readFileSync } from 'node:fs';

describe('runtime rope inv_freq', () => {
  for (const name of ALL_PRESETS) {
    const p = locatePreset(name);
    it.skipIf(!p)(`${name}: equals HF's f32 inv_freq bit for bit`, async () => {
      const c = parseConfig(JSON.parse(readFileSync(`${p!.dir}/config.json`, 'utf8')));
      const hf = (await readTensorFile(`${p!.dir}/fixtures/misc.safetensors`)).get('rope_inv_freq')!.data;
      expect(Array.from(ropeInvFreq(c.ropeTheta, c.rotaryDim))).toEqual(Array.from(hf));
    });
  }
});
