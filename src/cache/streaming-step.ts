// A step of a model whose routed experts do not all fit on the GPU. The forward walk (src/model/forward.ts) stops
// at each layer's routed experts; here the step is submitted up to that point, the layer's top-k ids (and the
// prefetch guess for the next layer, from the next layer's router on this layer's MoE input) are read back, the
// expert cache makes those experts resident (uploading misses from the RAM tier or the store), and only then are
// the routed experts encoded, in sub-batches of tokens whose experts fit the slots. One readback per layer.
// With cacheAwareRouting the readback also holds the layer's weights and router logits, and a token's picks past
// its best `exact` that are not in a GPU slot are replaced by resident ones (policy.ts cacheAwareRoute): written
// back to the GPU before the routed experts run, so the layer uploads only the exact picks it misses. With
// unavailableExperts 'substitute' the layer's experts not on hand are fetched first, and those that cannot be
// (offline, a partial store) are replaced the same way by experts on hand.
import type { GpuContext, Step } from '../gpu/context.ts';
import { Usage } from '../gpu/context.ts';
import type { ForwardBuilder, StepOptions } from '../model/forward.ts';
import type { GpuWeights } from '../model/gpu-weights.ts';
import type { StepRunner } from '../model/model.ts';
import { ExpertCache, type BatchedExpertSource, type ExpertCacheOptions, type ExpertCacheStats } from './expert-cache.ts';
import { cacheAwareRoute, planSubBatches, type LayerRouting } from './policy.ts';

/**
 * Replaces the router's choice of a streaming layer (T tokens x top_k ids; their weights too, when given) and the
 * prefetch guess for the next layer, so a recorded or synthetic routing trace drives the expert cache (bench/stream.ts).
 */
export type RoutingTrace = (layer: number, T: number) => { idx: Uint32Array<ArrayBuffer>; w?: Float32Array<ArrayBuffer>; guess?: Uint32Array<ArrayBuffer> };

export interface StreamingOptions extends ExpertCacheOptions {
  /** Benchmarks only: routing from a trace instead of the router. */
  routingTrace?: RoutingTrace;
  /**
   * Opt-in, approximate: each token's best `exact` experts as routed, its other picks from the experts already in
   * GPU slots where the router's pick is not (policy.ts cacheAwareRoute). Fewer uploads, a different model.
   */
  cacheAwareRouting?: { exact: number };
  /**
   * A routed expert the source can neither give from its store nor fetch (offline, a partial store): 'error' (the
   * default: the source's ExpertUnavailableError ends the step) or 'substitute' (the token takes the best-scoring
   * expert on hand, in a slot, the RAM tier or the store, instead: approximate, counted as replaced).
   */
  unavailableExperts?: 'error' | 'substitute';
  /**
   * Sum each layer's router probabilities over the tokens (a long step's last MASS_ROWS) into the expert cache's
   * routerMass: what a store still being filled fetches first (the engine's fill priority).
   */
  routerMass?: boolean;
}

const MASS_ROWS = 64; // a long prompt's last tokens: what it is about now, without reading back (T, E) for all of it

export class StreamingStep implements StepRunner {
  readonly experts: ExpertCache;
  private readonly trace?: RoutingTrace;
  private readonly exact?: number; // cache-aware routing: the picks a token keeps as routed
  private readonly substitute: boolean; // unavailableExperts 'substitute'
  private readonly mass: boolean; // routerMass
  private routing?: GPUBuffer; // MAP_READ: a layer's idx (maxT, k), the next layer's guess (maxT, k); w (maxT, k), logits (maxT, E+1)

  constructor(private readonly ctx: GpuContext, src: BatchedExpertSource, weights: GpuWeights, private readonly fb: ForwardBuilder, opts: StreamingOptions = {}) {
    this.experts = new ExpertCache(ctx, src, weights.layers.map((l) => l.experts), opts);
    this.trace = opts.routingTrace;
    this.exact = opts.cacheAwareRouting?.exact;
    this.substitute = opts.unavailableExperts === 'substitute';
    this.mass = opts.routerMass === true;
    const k = weights.config.numExpertsPerTok;
    if (this.exact !== undefined && !(Number.isInteger(this.exact) && this.exact >= 0 && this.exact <= k)) throw new RangeError(`cacheAwareRouting.exact must be an integer from 0 to top_k (${k}), not ${this.exact}`);
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
      const read = await this.readRouting(st.ops, T, guess);
      let { idx } = read, pred = read.guess;
      st.ops.length = 0;
      xc.addReadback(l, performance.now() - t0);
      if (read.recent) xc.addRouterMass(l, read.recent);
      if (this.trace) {
        const r = this.trace(l, T);
        [idx, pred] = [r.idx, guess ? r.guess : undefined];
        this.ctx.device.queue.writeBuffer(fb.scratch.topIdx, 0, idx);
        if (r.w) this.ctx.device.queue.writeBuffer(fb.scratch.topW, 0, r.w);
      } else if (read.routing) {
        await this.reroute(l, T, read.routing);
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

  /**
   * Cache-aware routing, then (unavailableExperts 'substitute') the experts the source cannot give swapped for ones
   * on hand; the rewritten ids and weights go back to the GPU before the layer's routed experts are encoded.
   */
  private async reroute(l: number, T: number, routing: LayerRouting): Promise<void> {
    const xc = this.experts, c = this.fb.w.config, E = c.numExperts, k = c.numExpertsPerTok, { idx } = routing;
    let n = 0;
    if (this.exact !== undefined) {
      const table = xc.tables[l], exactPicks = new Set<number>();
      for (let t = 0; t < T; t++) for (let j = 0; j < this.exact; j++) exactPicks.add(idx[t * k + j]);
      n += cacheAwareRoute(routing, T, E, k, c.normTopkProb, this.exact, (e) => table.slotOf[e] >= 0 || exactPicks.has(e));
    }
    if (this.substitute) { // fetch what is not on hand now: whatever fails is swapped for experts on hand
      const gone = await xc.unreachable(l, [...new Set(idx)]);
      if (gone.size > 0) n += cacheAwareRoute(routing, T, E, k, c.normTopkProb, 0, (e) => !gone.has(e) && xc.onHand(l, e));
    }
    if (n === 0) return;
    this.ctx.device.queue.writeBuffer(this.fb.scratch.topIdx, 0, idx);
    this.ctx.device.queue.writeBuffer(this.fb.scratch.topW, 0, routing.w);
    xc.addReplaced(l, n);
  }

  stats(): ExpertCacheStats {
    return this.experts.stats();
  }

  /**
   * Submit `ops` plus copies of the router's idx (and the next layer's guess; cache-aware: its weights and logits;
   * routerMass: the logits of the last MASS_ROWS tokens at least) and map them: one readback per layer.
   */
  private async readRouting(ops: Step[], T: number, guess: boolean): Promise<{ idx: Uint32Array<ArrayBuffer>; guess?: Uint32Array<ArrayBuffer>; routing?: LayerRouting; recent?: Float32Array<ArrayBuffer> }> {
    const s = this.fb.scratch, c = this.fb.w.config, k = c.numExpertsPerTok, row = (c.numExperts + 1) * 4;
    const aware = this.exact !== undefined || this.substitute, recentRows = this.mass ? Math.min(T, MASS_ROWS) : 0;
    const part = s.maxT * k * 4, bytes = T * k * 4, rows = aware ? T : recentRows, first = T - rows;
    const size = aware || this.mass ? 3 * part + s.maxT * row : 2 * part;
    this.routing ??= this.ctx.device.createBuffer({ size, usage: Usage.MAP_READ | Usage.COPY_DST, label: 'routing readback' });
    const rb = this.routing;
    const copy = (label: string, src: GPUBuffer, srcOffset: number, dstOffset: number, n: number): Step => ({ label, copy: { src, srcOffset, dst: rb, dstOffset, size: n } });
    const copies = [copy('read idx', s.topIdx, 0, 0, bytes)];
    if (guess) copies.push(copy('read guess', this.fb.streamScratch.predIdx, 0, part, bytes));
    if (aware) copies.push(copy('read w', s.topW, 0, 2 * part, bytes));
    if (rows > 0) copies.push(copy('read logits', s.routerLogits, first * row, 3 * part, rows * row));
    this.ctx.run([...ops, ...copies]);
    await rb.mapAsync(1 /* GPUMapMode.READ */, 0, size);
    const m = rb.getMappedRange(0, size);
    const idx = new Uint32Array(m.slice(0, bytes));
    const logits = rows > 0 ? new Float32Array(m.slice(3 * part, 3 * part + rows * row)) : undefined;
    const out = {
      idx,
      guess: guess ? new Uint32Array(m.slice(part, part + bytes)) : undefined,
      routing: aware ? { idx, w: new Float32Array(m.slice(2 * part, 2 * part + bytes)), logits: logits! } : undefined,
      recent: recentRows > 0 ? logits!.subarray((rows - recentRows) * (c.numExperts + 1)) : undefined,
    };
    rb.unmap();
    return out;
  }
}
