// Streaming routed experts through the GPU expert cache (src/cache/) gives the fully resident logits:
// brown-tiny-q4 (public/models/brown-tiny-q4, read through NodeFileStore) with slots for 25% of each layer's
// experts, on a prefill that needs several sub-batches and on teacher-forced decode steps. The telemetry must
// show misses, evictions, sub-batches and a prefetch accuracy (printed for the record). Cache-aware routing: the
// GPU runs the rewritten picks and weights (a routing trace of them reproduces its logits).
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { afterAll, describe, expect, it, vi } from 'vitest';
import * as policy from '../../src/cache/policy.ts';
import { GpuContext } from '../../src/gpu/context.ts';
import type { Qwen3NextGpuModel } from '../../src/model/model.ts';
import { expertStats, loadModel, routerMass } from '../../src/cache/load.ts';
import type { StreamingOptions } from '../../src/cache/streaming-step.ts';
import { expertLayout } from '../../src/format/pack.ts';
import { NodeFileStore } from '../../src/store/node.ts';
import { storeSource } from '../../src/store/store.ts';
import { REPO_ROOT } from '../helpers/fixtures.ts';
import { getTestDevice, withGpuErrors } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/compare.ts';

const DIR = join(REPO_ROOT, 'public/models/brown-tiny-q4');
const PROMPT = [12, 845, 33, 1021, 7, 400, 2048, 99, 3000, 17, 256, 5];
const DECODE = [64, 901, 2, 1500, 77, 3100, 8];
const TOL = 1e-5;

// Every routing cache-aware routing leaves (per streaming layer, in order), recorded for the trace that replays it.
const routed: { idx: Uint32Array<ArrayBuffer>; w: Float32Array<ArrayBuffer> }[] = [];
vi.mock('../../src/cache/policy.ts', async (importOriginal) => {
  const real = await importOriginal<typeof policy>();
  return {
    ...real,
    cacheAwareRoute: (...a: Parameters<typeof real.cacheAwareRoute>) => {
      const n = real.cacheAwareRoute(...a);
      routed.push({ idx: a[0].idx.slice(), w: a[0].w.slice() });
      return n;
    },
  };
});

describe.runIf(existsSync(join(DIR, 'manifest.json')))('expert cache on brown-tiny-q4', () => {
  const stores: NodeFileStore[] = [];
  let residentModel: Qwen3NextGpuModel | undefined, allBytes = 0, ctx: GpuContext | undefined;
  afterAll(() => Promise.all(stores.map((s) => s.close())));

  async function open(opts: { expertCacheBytes?: number; streamExperts?: boolean } & StreamingOptions = {}) {
    const store = await NodeFileStore.open(DIR);
    stores.push(store);
    const src = await storeSource(store);
    ctx ??= new GpuContext(await getTestDevice()); // one context: its pipelines compile once for every model here
    const model = await loadModel(ctx, src, { maxContext: 64, maxTokensPerStep: 16, ...opts });
    const c = src.config, all = c.numLayers * c.numExperts * expertLayout(c, src.quant.experts).words * 4;
    return { model, all };
  }

  /** Prefill logits (T, V), then one teacher-forced decode step per DECODE id. */
  async function run(model: Qwen3NextGpuModel) {
    const prefill = await model.forward(PROMPT, { logits: 'all' });
    const decode: Float32Array[] = [];
    for (const id of DECODE) decode.push(await model.forward([id]));
    return { prefill, decode };
  }

  it('25% of the experts on the GPU gives the fully resident logits', { timeout: 120_000 }, () =>
    withGpuErrors(async () => {
      const resident = await open();
      residentModel = resident.model;
      allBytes = resident.all;
      expect(expertStats(resident.model)).toBeUndefined();
      const want = await run(resident.model);

      const streaming = await open({ expertCacheBytes: Math.floor(resident.all / 4) });
      const c = streaming.model.config;
      const prefill = await streaming.model.forward(PROMPT, { logits: 'all' });
      const afterPrefill = expertStats(streaming.model)!;
      expect(afterPrefill.slotsPerLayer).toBe(c.numExperts / 4);
      expectClose('prefill logits', prefill, want.prefill, { maxAbs: TOL });
      // 12 tokens x top-10 of 64 experts cannot fit 16 slots: the prefill ran in sub-batches and evicted.
      expect(afterPrefill.lastStep.every((l) => l.subBatches > 1)).toBe(true);
      expect(afterPrefill.totals.evictions).toBeGreaterThan(0);

      for (let i = 0; i < DECODE.length; i++) {
        expectClose(`decode ${i}`, await streaming.model.forward([DECODE[i]]), want.decode[i], { maxAbs: TOL });
      }
      const s = expertStats(streaming.model)!;
      expect(s.steps).toBe(1 + DECODE.length);
      expect(s.totals.misses).toBeGreaterThan(0);
      expect(s.totals.hits).toBeGreaterThan(0);
      expect(s.totals.hits + s.totals.misses).toBeGreaterThanOrEqual(DECODE.length * c.numLayers * c.numExpertsPerTok);
      expect(s.totals.bytesUploaded).toBe(s.totals.misses * expertLayout(c, 'q4').words * 4);
      expect(s.totals.prefetchAccuracy).toBeGreaterThan(0);
      const d = s.lastStep;
      console.log(`[expert-cache] 16/64 slots, ${PROMPT.length}-token prefill + ${DECODE.length} decode steps: ` +
        `hit rate ${(s.totals.hitRate * 100).toFixed(1)}%, misses ${s.totals.misses} (RAM ${s.totals.ramHits}, prefetched ${s.totals.prefetchHits}), ` +
        `evictions ${s.totals.evictions}, store reads ${s.totals.storeReads} (${(s.totals.bytesRead / 1e6).toFixed(2)} MB), uploaded ${(s.totals.bytesUploaded / 1e6).toFixed(2)} MB, ` +
        `prefetch accuracy ${(s.totals.prefetchAccuracy * 100).toFixed(1)}%, stall ${s.totals.stallMs.toFixed(1)} ms, router readback ${s.totals.readbackMs.toFixed(1)} ms; ` +
        `last decode step per layer hits/misses: ${d.map((l) => `${l.hits}/${l.misses}`).join(' ')}`);
    }));

  it('streams without prefetch and with no RAM tier, still exact', { timeout: 120_000 }, () =>
    withGpuErrors(async () => {
      const resident = residentModel!;
      resident.reset();
      const want = await resident.forward(PROMPT.slice(0, 6), { logits: 'all' });
      const bare = await open({ expertCacheBytes: 1, prefetch: false, ramCacheBytes: 0 }); // clamps to top_k + 2 slots
      expect(expertStats(bare.model)!.slotsPerLayer).toBe(bare.model.config.numExpertsPerTok + 2);
      expectClose('prefill logits', await bare.model.forward(PROMPT.slice(0, 6), { logits: 'all' }), want, { maxAbs: TOL });
      const s = expertStats(bare.model)!;
      expect(s.totals.ramHits + s.totals.prefetchHits + s.totals.predicted).toBe(0);
      expect(s.totals.storeReads).toBe(s.totals.misses);
      // The grouped (GEMM) MoE path on sub-batches.
      resident.reset();
      bare.model.reset();
      const grouped = await resident.forward(PROMPT.slice(0, 6), { logits: 'all', moe: 'grouped' });
      expectClose('grouped prefill logits', await bare.model.forward(PROMPT.slice(0, 6), { logits: 'all', moe: 'grouped' }), grouped, { maxAbs: TOL });
      // nextToken (sampling appended to the streamed step) picks the resident model's greedy token.
      const greedy = { temperature: 0, topK: 0, topP: 1, random: 0 };
      expect(await bare.model.nextToken([DECODE[0]], greedy)).toBe(await resident.nextToken([DECODE[0]], greedy));
    }));

  it('cache-aware routing: the rewritten picks and weights are what the GPU runs; a decode step uploads only exact picks; the router mass', { timeout: 120_000 }, () =>
    withGpuErrors(async () => {
      if (!residentModel) ({ model: residentModel, all: allBytes } = await open()); // run alone (-t)
      const resident = residentModel, k = resident.config.numExpertsPerTok, L = resident.config.numLayers;
      const steps = async (model: Qwen3NextGpuModel) => { // the prompt, then 2 decode steps (SwiftShader's time)
        const out = [await model.forward(PROMPT, { logits: 'all' })];
        for (const id of DECODE.slice(0, 2)) out.push(await model.forward([id]));
        return out;
      };
      resident.reset();
      const want = await steps(resident);
      const quarter = Math.floor(allBytes / 4);
      routed.length = 0;
      const aware = await open({ expertCacheBytes: quarter, cacheAwareRouting: { exact: 3 }, routerMass: true });
      const approx = await steps(aware.model);
      const s = expertStats(aware.model)!;
      expect(routed).toHaveLength(approx.length * L);
      expect(s.totals.replaced).toBeGreaterThan(0);
      for (const l of s.lastStep) expect(l.misses, 'a decode step uploads at most the 3 exact picks a layer').toBeLessThanOrEqual(3);
      expect(Math.max(...approx[2].map((x, j) => Math.abs(x - want[2][j]))), 'another model').toBeGreaterThan(1e-3);
      let n = 0;
      const replay = await open({ expertCacheBytes: quarter, routingTrace: () => routed[n++], routerMass: true });
      (await steps(replay.model)).forEach((x, i) => expectClose(`replayed step ${i}`, x, approx[i], { maxAbs: TOL }));
      // the routers' probabilities summed over the tokens (the fill's priority): over the prompt, the softmax of the
      // resident model's router logits (its taps) summed over the rows; read alone or with cache-aware's rows alike
      const E = resident.config.numExperts;
      resident.reset();
      await resident.forward(PROMPT, { taps: Array.from({ length: L }, (_, l) => `L${l}.router_logits`) });
      const exact = await open({ expertCacheBytes: quarter, routerMass: true });
      await exact.model.forward(PROMPT);
      const mass = routerMass(exact.model)!, [ma, mr] = [aware.model, replay.model].map((m) => routerMass(m)!);
      for (let l = 0; l < L; l++) {
        const logits = await resident.readTap(`L${l}.router_logits`), want = new Float64Array(E);
        policy.addRouterProbabilities(want, logits);
        want.forEach((x, e) => expect(mass(l, e), `L${l} expert ${e}`).toBeCloseTo(x, 4));
        expect(Array.from({ length: E }, (_, e) => ma(l, e)).reduce((a, b) => a + b)).toBeCloseTo(PROMPT.length + 2, 4);
        for (let e = 0; e < E; e++) expect(mr(l, e)).toBeCloseTo(ma(l, e), 4);
      }
      console.log(`[expert-cache] cache-aware, exact 3 of ${k}, 16/64 slots: ${s.totals.replaced} picks replaced, hit rate ${(s.totals.hitRate * 100).toFixed(1)}%, misses ${s.totals.misses}`);
    }));
});
