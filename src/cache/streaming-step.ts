// A step of a model whose routed experts do not all fit on the GPU. The forward walk (src/model/forward.ts) stops
// at each layer's routed experts; here the step is submitted up to that point, the layer's top-k ids (and the
// prefetch guess for the next layer, from the next layer's router on this layer's MoE input) are read back, the
// expert cache makes those experts resident (uploading misses from the RAM tier or the store), and only then are
// the routed experts encoded, in sub-batches of tokens whose experts fit the slots. One readback per layer.
import type { GpuContext, Step } from '../gpu/context.ts';
import { Usage } from '../gpu/context.ts';
import type { ForwardBuilder, StepOptions } from '../model/forward.ts';
import type { GpuWeights } from '../model/gpu-weights.ts';
import type { StepRunner } from '../model/model.ts';
import { ExpertCache, type BatchedExpertSource, type ExpertCacheOptions, type ExpertCacheStats } from './expert-cache.ts';
import { planSubBatches } from './policy.ts';

/**
 * Replaces the router's choice of a streaming layer (T tokens x top_k ids) and the prefetch guess for the next
 * layer, so a recorded or synthetic routing trace drives the expert cache (bench/stream.ts).
 */
export type RoutingTrace = (layer: number, T: number) => { idx: Uint32Array<ArrayBuffer>; guess?: Uint32Array<ArrayBuffer> };

export interface StreamingOptions extends ExpertCacheOptions {
  /** Benchmarks only: routing from a trace instead of the router. */
  routingTrace?: RoutingTrace;
}

export class StreamingStep implements StepRunner {
  readonly experts: ExpertCache;
  private readonly trace?: RoutingTrace;
  private routing?: GPUBuffer; // (2, maxT, k) u32 MAP_READ: a layer's idx and the next layer's guess

  constructor(private readonly ctx: GpuContext, src: BatchedExpertSource, weights: GpuWeights, private readonly fb: ForwardBuilder, opts: StreamingOptions = {}) {
    this.experts = new ExpertCache(ctx, src, weights.layers.map((l) => l.experts), opts);
    this.trace = opts.routingTrace;
  }

  async run(T: number, opts: StepOptions, after: Step[], before: Step[] = []): Promise<void> {
    const { fb, experts: xc } = this, c = fb.w.config, L = c.numLayers, k = c.numExpertsPerTok;
    const st = fb.begin(T, opts, { streaming: true });
    st.ops.push(...before);
    xc.beginStep();
    for (const l of fb.walk(st)) {
      const guess = xc.prefetch && l + 1 < L;
      if (guess) fb.predictRouter(st, l + 1);
      const t0 = performance.now();
      let [idx, pred] = await this.readRouting(st.ops, T * k, guess);
      st.ops.length = 0;
      xc.addReadback(l, performance.now() - t0);
      if (this.trace) {
        const r = this.trace(l, T);
        [idx, pred] = [r.idx, guess ? r.guess : undefined];
        this.ctx.device.queue.writeBuffer(fb.scratch.topIdx, 0, idx);
      }
      xc.observe(l, new Set(idx));
      if (pred) xc.predict(l + 1, new Set(pred));
      // Each sub-batch is submitted before the next one's uploads: writeBuffer is ordered after it on the queue.
      for (const run of planSubBatches(idx, T, k, xc.slotsPerLayer)) {
        await xc.ensure(l, run.experts);
        fb.routedExperts(st, l, run);
        this.ctx.run(st.ops);
        st.ops.length = 0;
      }
    }
    this.ctx.run([...st.ops, ...after]);
    xc.endStep();
  }

  stats(): ExpertCacheStats {
    return this.experts.stats();
  }

  /** Submit `ops` plus copies of the router's idx (and the next layer's guess) and map them: one readback per layer. */
  private async readRouting(ops: Step[], n: number, guess: boolean): Promise<[Uint32Array<ArrayBuffer>, Uint32Array<ArrayBuffer> | undefined]> {
    const s = this.fb.scratch, bytes = n * 4;
    const half = s.maxT * this.fb.w.config.numExpertsPerTok * 4;
    this.routing ??= this.ctx.device.createBuffer({ size: 2 * half, usage: Usage.MAP_READ | Usage.COPY_DST, label: 'routing readback' });
    const rb = this.routing;
    const copies: Step[] = [{ label: 'read idx', copy: { src: s.topIdx, srcOffset: 0, dst: rb, dstOffset: 0, size: bytes } }];
    if (guess) copies.push({ label: 'read guess', copy: { src: this.fb.streamScratch.predIdx, srcOffset: 0, dst: rb, dstOffset: half, size: bytes } });
    this.ctx.run([...ops, ...copies]);
    await rb.mapAsync(1 /* GPUMapMode.READ */, 0, 2 * half);
    const m = rb.getMappedRange(0, 2 * half);
    const idx = new Uint32Array(m.slice(0, bytes));
    const pred = guess ? new Uint32Array(m.slice(half, half + bytes)) : undefined;
    rb.unmap();
    return [idx, pred];
  }
}
