// A model whose shared expert has an expert's shape (shared_expert_intermediate_size = moe_intermediate_size, as in
// Qwen3-Next-80B) keeps it in one more expert slot: decode-path steps run it as an 11th pair in the routed GEMVs,
// grouped (prefill) steps read the dense shared_gate_up / shared_down as views of that slot. Random weights; the
// two paths must agree on every row's logits, token-by-token decode with one prefill, and streaming with resident.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { GpuContext } from '../../src/gpu/context.ts';
import { sharedExpertFits } from '../../src/model/gpu-weights.ts';
import { Qwen3NextGpuModel } from '../../src/model/model.ts';
import { expertStats, loadModel } from '../../src/cache/load.ts';
import { expertLayout, QUANT_F32, type TensorPlan, type WeightSource } from '../../src/format/pack.ts';
import { packedWords } from '../../src/quant/formats.ts';
import { REPO_ROOT } from '../helpers/fixtures.ts';
import { withGpuErrors } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/compare.ts';
import { randn } from '../helpers/random.ts';

function randomSource(): WeightSource {
  const raw = JSON.parse(readFileSync(join(REPO_ROOT, 'test/fixtures/tiny/config.json'), 'utf8'));
  const config = parseConfig({ ...raw, shared_expert_intermediate_size: raw.moe_intermediate_size });
  // Each record's values follow from its name alone: a streaming model reads them in another order.
  const words = (n: number, seed: number) => new Uint32Array(randn(n, seed, 0.15).buffer) as Uint32Array<ArrayBuffer>;
  const seedOf = (name: string) => [...name].reduce((h, ch) => (h * 31 + ch.charCodeAt(0)) % 1_000_003, 7);
  return {
    config,
    quant: QUANT_F32,
    dense: async (t: TensorPlan) => words(packedWords(t.format, t.N, t.K), seedOf(t.name)),
    expert: async (l: number, e: number) => words(expertLayout(config, QUANT_F32.experts).words, 2_000_000 + l * 1000 + e),
  };
}

describe('the shared expert in an expert slot', () => {
  it('decode path (shared as one more pair) == grouped path (dense views of the slot) == token by token == streaming', () =>
    withGpuErrors(async (device) => {
      const src = randomSource();
      expect(sharedExpertFits(src.config, src.quant), 'the test model must take the fused layout').toBe(true);
      // f32 K/V: with f16, a key the prefill and decode kernels compute an f32 ulp apart can round to different halves,
      // a difference of the cache's precision, not of the expert paths this compares at 1e-5
      const opts = { maxContext: 64, maxTokensPerStep: 16, kvCache: 'f32' } as const;
      const model = await Qwen3NextGpuModel.load(new GpuContext(device), src, opts);
      expect(model.weights.layers.every((l) => l.experts.sharedSlot === l.experts.slots)).toBe(true);
      const ids = [5, 77, 301, 12, 9, 400, 33, 2];
      model.reset();
      const fused = await model.forward(ids, { logits: 'all' });
      model.reset();
      const grouped = await model.forward(ids, { logits: 'all', moe: 'grouped' });
      expectClose('decode path vs grouped path', fused, grouped, { rel: 1e-5 });
      model.reset();
      const V = src.config.vocabSize, stepwise = new Float32Array(ids.length * V);
      for (let i = 0; i < ids.length; i++) stepwise.set(await model.forward([ids[i]]), i * V);
      expectClose('token by token vs one prefill', stepwise, grouped, { rel: 1e-5 });

      // Streaming (a quarter of the experts on the GPU): the shared expert keeps its slot beside the routed ones.
      const recordBytes = expertLayout(src.config, QUANT_F32.experts).words * 4;
      const streaming = await loadModel(new GpuContext(device), src, { ...opts, expertCacheBytes: src.config.numLayers * 4 * recordBytes });
      expect(expertStats(streaming), 'streams').toBeDefined();
      expect(streaming.weights.layers.every((l) => l.experts.sharedSlot === l.experts.slots && l.experts.slots < src.config.numExperts)).toBe(true);
      expectClose('streaming vs resident', await streaming.forward(ids, { logits: 'all' }), fused, { rel: 1e-5 });
    }));
});
