// Streaming at the Qwen3-Next-80B-A3B shape under a GPU memory cap: dense weights resident, routed experts read
// from a packed store on disk (bench/weights.ts writeSyntheticStore) through the RAM tier into the GPU expert
// cache, layer by layer (src/model/model.ts step()). Routing comes from a synthetic trace instead of the random
// router, so the hit rate reflects a workload rather than noise (bench/traces.ts: 'uniform', the worst case; 'zipf';
// 'calibrated', fitted to published LRU hit rates of real routers on this shape).
// The prefetch guess is simulated too: the next layer's true experts, each swapped for a random one with
// probability 1 - prefetchAccuracy (brown-tiny's real router-based prediction scored 75-87%, BENCHMARKS.md).
import { parseConfig } from '../src/config.ts';
import type { GpuContext } from '../src/gpu/context.ts';
import type { ExpertUpload } from '../src/cache/upload.ts';
import { Qwen3NextGpuModel } from '../src/model/model.ts';
import { expertStats, streaming } from '../src/cache/load.ts';
import type { RoutingTrace } from '../src/cache/streaming-step.ts';
import { QUANT_INT4, expertLayout } from '../src/format/pack.ts';
import { emptyExperts, loadGpuWeights, sharedExpertViews, type GpuWeights } from '../src/model/gpu-weights.ts';
import { packedWords } from '../src/quant/formats.ts';
import { NodeFileStore } from '../src/store/node.ts';
import { storeSource } from '../src/store/store.ts';
import { syntheticConfig } from '../scripts/make-fullsize-layer.ts';
import { GREEDY, median } from './e2e.ts';
import { writeSyntheticStore, storeDir } from './weights.ts';
import { makeTrace, rng, type TraceKind } from './traces.ts';

export interface StreamOptions {
  layers: number;
  small?: boolean;
  dir: string; // where the synthetic store is written (reused when present)
  gpuCapBytes: number; // everything the model allocates on the GPU
  ramCacheBytes: number;
  promptTokens: number;
  decodeTokens: number;
  /** trace 'router': the model's own (random) routers route, optionally cache-aware keeping `cacheAware` picks. */
  runs: { trace: TraceKind | 'router'; upload: ExpertUpload; prefetch: boolean; cacheAware?: number }[];
  zipfS: number;
  reuse: number;
  prefetchAccuracy: number;
}

export interface StreamRow {
  run: string;
  tokPerS: number; // 1000 / median ms per decode token
  hitRate: number;
  prefetchAccuracy: number;
  stallMsPerToken: number;
  readbackMsPerToken: number;
  mbUploadedPerToken: number;
  slotsPerLayer: number;
  gpuBytes: number;
}

export async function runStreaming(ctx: GpuContext, o: StreamOptions): Promise<{ rows: StreamRow[]; storeBytes: number; storeMs: number }> {
  const raw = syntheticConfig(o.layers, o.small), c = parseConfig(raw);
  const dir = storeDir(o.dir, o.layers);
  const written = await writeSyntheticStore(dir, raw, c, QUANT_INT4);
  const store = await NodeFileStore.open(dir);
  const src = await storeSource(store);
  const L = c.numLayers, E = c.numExperts, k = c.numExpertsPerTok;
  const recordBytes = expertLayout(c, QUANT_INT4.experts).words * 4;
  const rows: StreamRow[] = [];
  const maxContext = o.promptTokens + o.decodeTokens + 8;
  const opts = { maxContext, maxTokensPerStep: o.promptTokens };
  // Each run's own expert slots; a shared expert kept in an expert slot (gpu-weights.ts sharedExpertFits) moves
  // into the new buffers' extra slot, and the dense shared weights become views of it, as loadGpuWeights leaves them.
  const withSlots = (slots: number): GpuWeights => ({ ...dense, layers: dense.layers.map((l, i) => {
    const experts = emptyExperts(ctx, c, QUANT_INT4.experts, i, slots, l.experts.sharedSlot !== undefined);
    if (experts.sharedSlot === undefined) return { ...l, experts };
    const weights = new Map(l.weights), enc = ctx.device.createCommandEncoder();
    for (const [name, view] of sharedExpertViews(c, experts)) {
      const old = l.weights.get(name)!;
      enc.copyBufferToBuffer(old.buffer, old.offset, view.buffer, view.offset, packedWords(view.format, view.N, view.K) * 4);
      weights.set(name, view);
    }
    ctx.device.queue.submit([enc.finish()]);
    return { ...l, weights, experts };
  }) });

  // The dense weights are loaded once from the store and shared by every run; each run gets its own expert slots,
  // KV cache and scratch. Slots per layer: whatever the cap leaves after all the rest (measured on a probe model).
  const a0 = ctx.allocatedBytes;
  const dense = await loadGpuWeights(ctx, src, 0);
  const denseBytes = ctx.allocatedBytes - a0;
  const a1 = ctx.allocatedBytes;
  new Qwen3NextGpuModel(ctx, withSlots(k + 2), { ...opts, steps: streaming(src) });
  const perModel = ctx.allocatedBytes - a1 - L * (k + 2) * recordBytes; // cache + scratch + slot tables
  const slots = Math.min(E, Math.max(k + 2, Math.floor((o.gpuCapBytes - denseBytes - perModel) / (L * recordBytes))));

  for (const [n, run] of o.runs.entries()) {
    const before = ctx.allocatedBytes;
    const trace = makeTrace(run.trace === 'router' ? 'uniform' : run.trace, L, E, k, o, 1234 + n), guessRand = rng(777 + n);
    let token = 0; // first token of the current step
    const routingTrace: RoutingTrace = (l, T) => {
      const idx = new Uint32Array(T * k), guess = new Uint32Array(T * k);
      for (let t = 0; t < T; t++) {
        idx.set(trace(token + t, l), t * k);
        if (l + 1 < L) guess.set(trace(token + t, l + 1).map((e) => (guessRand() < o.prefetchAccuracy ? e : Math.floor(guessRand() * E))), t * k);
      }
      return { idx, guess };
    };
    const steps = streaming(src, {
      ramCacheBytes: o.ramCacheBytes, prefetch: run.prefetch, upload: run.upload,
      ...(run.trace === 'router' ? { cacheAwareRouting: run.cacheAware === undefined ? undefined : { exact: run.cacheAware } } : { routingTrace }),
    });
    const model = new Qwen3NextGpuModel(ctx, withSlots(slots), { ...opts, steps });
    const gpuBytes = denseBytes + ctx.allocatedBytes - before;

    await model.forward(Array.from({ length: o.promptTokens }, (_, i) => i + 1));
    token = o.promptTokens;
    const t0 = expertStats(model)!.totals;
    const ms: number[] = [];
    let tok = 1;
    for (let i = 0; i < o.decodeTokens; i++) {
      const t = performance.now();
      tok = await model.nextToken([tok % c.vocabSize], GREEDY);
      ms.push(performance.now() - t);
      token++;
    }
    const t1 = expertStats(model)!.totals, d = (key: keyof typeof t1) => (t1[key] as number) - (t0[key] as number);
    const routed = d('hits') + d('misses');
    rows.push({
      run: `${run.trace}${run.cacheAware === undefined ? '' : `, cache-aware (keeps ${run.cacheAware})`}, ${run.upload}, prefetch ${run.prefetch ? 'on' : 'off'}`,
      tokPerS: 1000 / median(ms),
      hitRate: d('hits') / routed,
      prefetchAccuracy: d('scored') ? d('predictedCorrect') / d('scored') : 0,
      stallMsPerToken: d('stallMs') / o.decodeTokens,
      readbackMsPerToken: d('readbackMs') / o.decodeTokens,
      mbUploadedPerToken: d('bytesUploaded') / o.decodeTokens / 2 ** 20,
      slotsPerLayer: slots,
      gpuBytes,
    });
    for (const layer of model.weights.layers) { layer.experts.gateUp.destroy(); layer.experts.down.destroy(); }
  }
  await store.close();
  return { rows, storeBytes: written.bytes, storeMs: written.ms };
}
