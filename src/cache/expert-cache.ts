// The GPU expert cache: per MoE layer a fixed pool of slots (gpu-weights.ts allocates `gateUp`/`down` with
// `slots` records and the (E) `slotOf` table), a RAM tier of record buffers in front of the store, and the
// telemetry. The model calls, per layer of a streaming step: observe() with the step's routed experts,
// ensure() for each sub-batch (uploads the misses, rewrites slotOf), and predict() for the next layer.
//
// Upload path: src/cache/upload.ts (queue.writeBuffer, or a ring of mapped staging buffers; both are ordered on
// the queue after every earlier submit, so a slot can be overwritten once the MoE that read it was submitted).
import { ExpertUnavailableError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import type { GpuExperts } from '../model/gpu-weights.ts';
import type { WeightSource } from '../format/pack.ts';
import { expertLayout } from '../format/pack.ts';
import { addRouterProbabilities, defaultRamCacheBytes, RamTier, SlotTable } from './policy.ts';
import { createUploader, type ExpertUpload, type Uploader } from './upload.ts';

export type { ExpertUpload } from './upload.ts';

/** Counters of one layer in one step (or summed). */
export interface ExpertLayerStats {
  hits: number; // routed experts already in a GPU slot
  misses: number; // uploaded into a slot (from the RAM tier or the store)
  ramHits: number; // misses served from the RAM tier
  prefetchHits: number; // misses whose record a prefetch had read (done or in flight)
  storeReads: number; // records read from the store (demand + prefetch)
  bytesRead: number; // bytes read from the store
  bytesUploaded: number; // bytes written into GPU slots
  evictions: number; // slots whose expert was replaced
  stallMs: number; // time the step waited on store reads and uploads
  readbackMs: number; // time from submitting the layer up to its router to having idx (T, k) on the CPU
  subBatches: number; // MoE calls the step's tokens were cut into
  predicted: number; // distinct experts the previous layer's prefetch predicted for this layer
  actual: number; // distinct experts this layer's router chose in the step
  scored: number; // of those, the ones in a layer that had a prediction
  predictedCorrect: number; // |actual ∩ predicted|
  replaced: number; // picks replaced by experts on hand (cache-aware routing, unavailable experts substituted)
  unreachable: number; // experts the source could neither read nor fetch (unavailableExperts 'substitute')
}

export interface ExpertCacheStats {
  slotsPerLayer: number;
  experts: number; // E
  ramCacheBytes: number; // the RAM tier's budget (totals.ramHits: the misses it served)
  steps: number;
  totals: ExpertLayerStats & { hitRate: number; prefetchAccuracy: number };
  lastStep: ExpertLayerStats[]; // per layer
  /** Per layer, per expert (E): sub-batches that found it in a slot (hits) or uploaded it (misses), since load. */
  expertUse: { hits: number[]; misses: number[] }[];
}

const zero = (): ExpertLayerStats => ({ hits: 0, misses: 0, ramHits: 0, prefetchHits: 0, storeReads: 0, bytesRead: 0, bytesUploaded: 0, evictions: 0, stallMs: 0, readbackMs: 0, subBatches: 0, predicted: 0, actual: 0, scored: 0, predictedCorrect: 0, replaced: 0, unreachable: 0 });

/**
 * A source that can read several experts of one layer at once (IdbModelStore.readExperts: one transaction); one
 * still being stored says which experts it has (WeightSource.expertStored).
 */
export interface BatchedExpertSource extends WeightSource {
  expertsOfLayer?(layer: number, experts: number[]): Promise<Uint32Array<ArrayBuffer>[]>;
}

export interface ExpertCacheOptions {
  /** RAM tier budget in bytes (default: policy.ts defaultRamCacheBytes, an eighth of the machine's memory). */
  ramCacheBytes?: number;
  /** Read the next layer's predicted experts into the RAM tier early (default true). */
  prefetch?: boolean;
  /** How misses are uploaded (src/cache/upload.ts; default 'staging-ring', faster end to end in BENCHMARKS.md). */
  upload?: ExpertUpload;
}

export class ExpertCache {
  readonly tables: SlotTable[];
  readonly ram: RamTier;
  readonly prefetch: boolean;
  private readonly inflight = new Map<string, { rec: Promise<Uint32Array<ArrayBuffer>>; prefetch: boolean }>();
  private readonly predictions: (Set<number> | undefined)[];
  private readonly gateUpWords: number;
  private readonly downWords: number;
  private readonly uploader: Uploader;
  private readonly totals = zero();
  private readonly use: { hits: Uint32Array; misses: Uint32Array }[];
  /** Per layer (E): the router's probabilities summed over the tokens seen (StreamingOptions.routerMass). */
  readonly routerMass: Float64Array[];
  private last: ExpertLayerStats[];
  private steps = 0;

  constructor(private readonly ctx: GpuContext, private readonly src: BatchedExpertSource, private readonly layers: GpuExperts[], opts: ExpertCacheOptions = {}) {
    const c = src.config;
    this.tables = layers.map((x) => new SlotTable(c.numExperts, x.slots));
    this.ram = new RamTier(opts.ramCacheBytes ?? defaultRamCacheBytes());
    this.prefetch = opts.prefetch ?? true;
    this.predictions = layers.map(() => undefined);
    ({ gateUpWords: this.gateUpWords, downWords: this.downWords } = expertLayout(c, src.quant.experts));
    this.uploader = createUploader(ctx, opts.upload ?? 'staging-ring', this.gateUpWords + this.downWords);
    this.last = layers.map(zero);
    this.use = layers.map(() => ({ hits: new Uint32Array(c.numExperts), misses: new Uint32Array(c.numExperts) }));
    this.routerMass = layers.map(() => new Float64Array(c.numExperts));
  }

  get slotsPerLayer(): number {
    return this.layers[0].slots;
  }

  beginStep(): void {
    this.steps++;
    this.last = this.layers.map(zero);
  }

  addReadback(layer: number, ms: number): void {
    this.last[layer].readbackMs += ms;
  }

  addRouterMass(layer: number, logits: Float32Array): void {
    addRouterProbabilities(this.routerMass[layer], logits);
  }

  addReplaced(layer: number, picks: number): void {
    this.last[layer].replaced += picks;
  }

  /** The step's distinct routed experts of `layer`: scores the prediction made for it. */
  observe(layer: number, actual: Set<number>): void {
    const s = this.last[layer], p = this.predictions[layer];
    s.actual += actual.size;
    if (p) {
      s.predicted += p.size;
      s.scored += actual.size;
      for (const e of actual) if (p.has(e)) s.predictedCorrect++;
      this.predictions[layer] = undefined;
    }
  }

  /** Experts the router of `layer` picks from the previous layer's MoE input: start reading the non-resident ones. */
  predict(layer: number, experts: Set<number>): void {
    this.predictions[layer] = experts;
    if (!this.prefetch) return;
    const want = [...experts].filter((e) => {
      const key = `${layer}.${e}`;
      return this.tables[layer].slotOf[e] < 0 && !this.ram.has(key) && !this.inflight.has(key);
    });
    this.read(layer, want, true).forEach((r) => r.catch(() => {})); // a failed prefetch is retried, and reported, on demand
  }

  /** In a slot, in the RAM tier, or in the source's store (not to be fetched). */
  onHand(layer: number, expert: number): boolean {
    return this.tables[layer].slotOf[expert] >= 0 || this.ram.has(`${layer}.${expert}`) || this.src.expertStored?.(layer, expert) !== false;
  }

  /**
   * Of `experts`, those not on hand are read now (into the RAM tier); returns the ones the source could not give
   * (ExpertUnavailableError: offline with a partial store). Other failures are thrown.
   */
  async unreachable(layer: number, experts: number[]): Promise<Set<number>> {
    const want = experts.filter((e) => !this.onHand(layer, e)), gone = new Set<number>();
    const fresh = want.filter((e) => !this.inflight.has(`${layer}.${e}`)), reads = this.read(layer, fresh, false);
    await Promise.all(want.map((e) => (this.inflight.get(`${layer}.${e}`)?.rec ?? reads[fresh.indexOf(e)]).catch((err: unknown) => {
      if (!(err instanceof ExpertUnavailableError)) throw err;
      gone.add(e);
    })));
    this.last[layer].unreachable += gone.size;
    return gone;
  }

  /** Make `experts` (at most slotsPerLayer) resident in `layer`'s slots and upload the slot table. */
  async ensure(layer: number, experts: number[]): Promise<void> {
    const s = this.last[layer], t0 = performance.now();
    const table = this.tables[layer], ev0 = table.evictions;
    const moves = table.assign(experts);
    s.hits += experts.length - moves.length;
    s.misses += moves.length;
    s.subBatches++;
    const missed = new Set(moves.map((m) => m.expert)), use = this.use[layer];
    for (const e of experts) (missed.has(e) ? use.misses : use.hits)[e]++;
    const fromStore: number[] = [];
    const recs = moves.map(({ expert }) => {
      const key = `${layer}.${expert}`;
      const r = this.ram.take(key);
      if (r) {
        s.ramHits++;
        if (r.prefetched) s.prefetchHits++;
        return r.rec;
      }
      const f = this.inflight.get(key);
      if (f) {
        if (f.prefetch) s.prefetchHits++;
        return f.rec;
      }
      fromStore.push(expert);
      return undefined;
    });
    const reads = this.read(layer, fromStore, false);
    let n = 0;
    const got = await Promise.all(recs.map((r) => r ?? reads[n++]));
    const x = this.layers[layer], gu = this.gateUpWords, dw = this.downWords;
    await this.uploader.upload(moves.map(({ slot }, i) => ({
      rec: got[i],
      copies: [{ dst: x.gateUp, dstByte: slot * gu * 4, srcWord: 0, words: gu }, { dst: x.down, dstByte: slot * dw * 4, srcWord: gu, words: dw }],
    })));
    s.bytesUploaded += moves.length * (gu + dw) * 4;
    if (moves.length > 0) this.ctx.device.queue.writeBuffer(x.slotOf, 0, table.gpuTable());
    s.evictions += table.evictions - ev0;
    s.stallMs += performance.now() - t0;
  }

  /**
   * Store reads of `experts` of one layer into the RAM tier (one batched read when the source has one), each
   * shared by whoever asks for the same record while it is in flight.
   */
  private read(layer: number, experts: number[], prefetch: boolean): Promise<Uint32Array<ArrayBuffer>>[] {
    if (experts.length === 0) return [];
    const s = this.last[layer];
    s.storeReads += experts.length;
    s.bytesRead += experts.length * (this.gateUpWords + this.downWords) * 4;
    const batch = experts.length > 1 && this.src.expertsOfLayer ? this.src.expertsOfLayer(layer, experts) : undefined;
    return experts.map((e, i) => this.track(layer, e, prefetch, batch ? batch.then((b) => b[i]) : this.src.expert(layer, e)));
  }

  private track(layer: number, expert: number, prefetch: boolean, read: Promise<Uint32Array<ArrayBuffer>>): Promise<Uint32Array<ArrayBuffer>> {
    const key = `${layer}.${expert}`;
    const rec = read.then(
      (r) => {
        this.inflight.delete(key);
        this.ram.put(key, r, prefetch);
        return r;
      },
      (e) => {
        this.inflight.delete(key);
        throw e;
      },
    );
    this.inflight.set(key, { rec, prefetch });
    return rec;
  }

  /** Close the step: add its per-layer numbers to the totals. */
  endStep(): void {
    for (const l of this.last) for (const k of Object.keys(l) as (keyof ExpertLayerStats)[]) this.totals[k] += l[k];
  }

  stats(): ExpertCacheStats {
    const t = this.totals, routed = t.hits + t.misses;
    return {
      slotsPerLayer: this.slotsPerLayer,
      experts: this.tables[0].E,
      ramCacheBytes: this.ram.budget,
      steps: this.steps,
      totals: { ...t, hitRate: routed ? t.hits / routed : 0, prefetchAccuracy: t.scored ? t.predictedCorrect / t.scored : 0 },
      lastStep: this.last.map((l) => ({ ...l })),
      expertUse: this.use.map((u) => ({ hits: Array.from(u.hits), misses: Array.from(u.misses) })),
    };
  }
}
