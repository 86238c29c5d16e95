// Comparing two WeightSources on the CPU: what loadGpuWeights would upload from each, word for word.
import { expect } from 'vitest';
import { densePlan, packedLayers, type WeightSource } from '../../src/format/pack.ts';

const bytes = (w: Uint32Array) => Buffer.from(w.buffer, w.byteOffset, w.byteLength);

/** Every dense tensor and expert record of `a` equals `b`'s, word for word (the MTP layer's too: both have it or neither). */
export async function expectSameSource(a: WeightSource, b: WeightSource) {
  expect(a.config).toEqual(b.config);
  expect(a.quant).toEqual(b.quant);
  expect(!!a.mtp, 'MTP layer').toBe(!!b.mtp);
  for (const t of densePlan(a.config, a.quant, a.mtp)) {
    const [x, y] = [await a.dense(t), await b.dense(t)];
    expect(x.length, t.name).toBe(y.length);
    expect(Buffer.compare(bytes(x), bytes(y)), t.name).toBe(0);
  }
  for (let l = 0; l < packedLayers(a.config, a.mtp); l++) {
    for (let e = 0; e < a.config.numExperts; e++) {
      const [x, y] = [await a.expert(l, e), await b.expert(l, e)];
      expect(x.length).toBe(y.length);
      expect(Buffer.compare(bytes(x), bytes(y)), `L${l}.E${e}`).toBe(0);
    }
  }
}
