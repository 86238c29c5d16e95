// Qwen3NextForCausalLM on the GPU: weights, cache and the forward op lists, with a small API:
// forward(ids) runs any number of tokens from the cache's position (split into steps of at most
// maxTokensPerStep, so a long prompt never needs (T, P) scratch for all of it at once).
import type { Checkpoint } from '../checkpoint/checkpoint.ts';
import { ExpertCache, type ExpertCacheStats, type ExpertUpload } from '../cache/expert-cache.ts';
import { planSubBatches } from '../cache/policy.ts';
import type { Qwen3NextConfig } from '../config.ts';
import { ConfigError, ContextLengthError, DeviceLimitError } from '../errors.ts';
import { checkAttnShape } from '../kernels/attention.ts';
import { checkConvWidth } from '../kernels/conv.ts';
import { checkGdnShape } from '../kernels/gdn.ts';
import { Usage, type GpuContext, type Step } from '../gpu/context.ts';
import { checkVocab, sample, type SampleParams } from '../kernels/sample.ts';
import { Qwen3NextGpuDynamicCache } from './dynamic-cache.ts';
import { ForwardBuilder, type StepOptions } from './forward.ts';
import { destroyGpuWeights, loadGpuWeights, type GpuWeights } from './gpu-weights.ts';
import { checkpointSource, expertLayout, QUANT_F32, type QuantConfig, type WeightSource } from '../format/pack.ts';

export interface ModelOptions {
  quant?: QuantConfig;
  /** KV-cache capacity in tokens (default: min(max_position_embeddings, 4096)). */
  maxContext?: number;
  /** Largest prefill step (default 256 tokens). */
  maxTokensPerStep?: number;
  /**
   * GPU bytes for routed experts, split evenly over the layers (default: all of them, fully resident). When
   * they do not all fit, steps run layer by layer and stream experts from the source (src/cache/expert-cache.ts);
   * each layer gets at least top_k + 2 slots whatever the budget.
   */
  expertCacheBytes?: number;
  /** RAM tier in front of the source when streaming (default 256 MiB). */
  ramCacheBytes?: number;
  /** Prefetch the next layer's likely experts when streaming (default true). */
  prefetch?: boolean;
  /** How misses reach their GPU slots when streaming (src/cache/expert-cache.ts; default 'staging-ring'). */
  upload?: ExpertUpload;
}

/**
 * Benchmarks only: replaces the router's choice of a streaming layer (T tokens x top_k ids) and the prefetch guess
 * for the next layer, so a recorded or synthetic routing trace drives the expert cache (bench/stream.ts).
 */
export type RoutingTrace = (layer: number, T: number) => { idx: Uint32Array<ArrayBuffer>; guess?: Uint32Array<ArrayBuffer> };

/** Expert slots per layer for a byte budget: all E when it fits, else at least top_k + 2. */
export function expertSlotsFor(src: WeightSource, expertCacheBytes?: number): number {
  const c = src.config, E = c.numExperts;
  if (expertCacheBytes === undefined) return E;
  const recordBytes = expertLayout(c, src.quant.experts).words * 4;
  const fit = Math.floor(expertCacheBytes / (c.numLayers * recordBytes));
  return Math.min(E, Math.max(fit, c.numExpertsPerTok + 2));
}

/** A decode step submitted by submitToken: read() waits for its sampled id; discard() drops it unread. */
export interface PendingToken {
  read(): Promise<number>;
  discard(): void;
}

/**
 * The head shapes and sizes the GPU kernels support, checked before any weight is read or uploaded (the CPU
 * reference runs any valid config; the kernels fix some sizes at compile time).
 */
export function checkKernelShapes(c: Qwen3NextConfig): void {
  try {
    checkAttnShape({ Hq: c.numAttentionHeads, Hkv: c.numKeyValueHeads, D: c.headDim, R: c.rotaryDim });
    checkGdnShape(c);
    checkConvWidth(c.convKernel);
    checkVocab(c.vocabSize);
  } catch (e) {
    throw new ConfigError(`config.json: this runtime's GPU kernels cannot run this model (${(e as Error).message}). Only the CPU reference (src/reference) supports this shape.`, 'config.json');
  }
}

export class Qwen3NextGpuModel {
  readonly cache: Qwen3NextGpuDynamicCache;
  readonly forwardBuilder: ForwardBuilder;
  private readonly idleSlots: GPUBuffer[] = []; // (1) u32 MAP_READ: sampled ids on their way back, reused
  private history?: GPUBuffer; // (n) u32 ids for the repetition penalty
  private routing?: GPUBuffer; // (2, maxT, k) u32 MAP_READ: a streaming layer's idx and the next layer's guess
  /** See RoutingTrace: set by benchmarks, never by the runtime. */
  routingTrace?: RoutingTrace;

  private constructor(readonly ctx: GpuContext, readonly weights: GpuWeights, maxContext: number, readonly maxTokensPerStep: number, readonly experts?: ExpertCache) {
    this.cache = new Qwen3NextGpuDynamicCache(ctx, weights.config, maxContext);
    this.forwardBuilder = new ForwardBuilder(ctx, weights, this.cache, maxTokensPerStep);
  }

  /** From a Hugging Face checkpoint, quantized while loading. */
  static fromCheckpoint(ctx: GpuContext, ckpt: Checkpoint, opts: ModelOptions = {}): Promise<Qwen3NextGpuModel> {
    return Qwen3NextGpuModel.load(ctx, checkpointSource(ckpt, opts.quant ?? QUANT_F32), opts);
  }

  /**
   * Weights onto the GPU, then the op lists of a decode token and of a full prefill step built once, all inside
   * error scopes: WebGPU reports a buffer it cannot allocate or a kernel past the device's limits (workgroup memory,
   * binding size) only to a scope, and the model would otherwise load and then compute garbage.
   */
  static async load(ctx: GpuContext, src: WeightSource, opts: Omit<ModelOptions, 'quant'> = {}): Promise<Qwen3NextGpuModel> {
    checkKernelShapes(src.config);
    const device = ctx.device;
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    let weights: GpuWeights | undefined, model: Qwen3NextGpuModel | undefined, failure: unknown;
    try {
      weights = await loadGpuWeights(ctx, src, expertSlotsFor(src, opts.expertCacheBytes));
      model = Qwen3NextGpuModel.fromWeights(ctx, weights, src, opts);
      if (model.experts) model.forwardBuilder.build(1, { logits: 'last' });
      else model.forwardBuilder.decodeOps({ logits: 'last' }); // kept: the first token replays it
      model.forwardBuilder.build(Math.min(model.maxTokensPerStep, model.cache.maxT), { logits: 'last' });
    } catch (e) {
      failure = e;
    }
    const invalid = await device.popErrorScope(), oom = await device.popErrorScope();
    if (oom || invalid) {
      model?.cache.destroy();
      if (weights) destroyGpuWeights(weights);
      if (oom) throw new DeviceLimitError(`The GPU ran out of memory loading the model (${oom.message}). Give it a smaller expertCacheBytes (experts then stream from storage), a smaller maxContext, or close other GPU-heavy tabs.`, 'out-of-memory');
      throw new DeviceLimitError(`This device cannot run the model's kernels at this shape (${invalid!.message}). Try a smaller maxTokensPerStep or maxContext; a model wider than this runtime's kernels support needs a device with larger limits.`, 'limits');
    }
    if (failure !== undefined) throw failure;
    return model!;
  }

  /** Around weights already on the GPU (benchmarks fill them at random); `src` feeds the expert cache when streaming. */
  static fromWeights(ctx: GpuContext, weights: GpuWeights, src: WeightSource | undefined, opts: Omit<ModelOptions, 'quant'> = {}): Qwen3NextGpuModel {
    const c = weights.config, streaming = weights.layers[0].experts.slots < c.numExperts;
    if (streaming && !src) throw new Error('fromWeights: streaming expert slots need a source for the experts');
    const maxContext = opts.maxContext ?? Math.min(c.maxPositionEmbeddings, 4096);
    const experts = streaming
      ? new ExpertCache(ctx, src!, weights.layers.map((l) => l.experts), { ramCacheBytes: opts.ramCacheBytes, prefetch: opts.prefetch, upload: opts.upload })
      : undefined;
    return new Qwen3NextGpuModel(ctx, weights, maxContext, opts.maxTokensPerStep ?? 256, experts);
  }

  get config() {
    return this.weights.config;
  }

  /**
   * Run `ids` from the cache's position. Returns logits (rows, V): rows = ids.length for logits 'all',
   * 1 (the last token) for 'last'. Taps are read from the last step.
   */
  async forward(ids: ArrayLike<number>, opts: Partial<StepOptions> = {}): Promise<Float32Array> {
    const all = (opts.logits ?? 'last') === 'all';
    const V = this.config.vocabSize, n = ids.length;
    if (n === 0) throw new RangeError('forward: no tokens');
    this.checkContext(n);
    const out = new Float32Array((all ? n : 1) * V);
    const s = this.forwardBuilder.scratch;
    for (let start = 0; start < n; start += this.maxTokensPerStep) {
      const T = Math.min(this.maxTokensPerStep, n - start);
      const chunk = Uint32Array.from({ length: T }, (_, i) => ids[start + i]);
      for (const id of chunk) if (id >= V) throw new RangeError(`token id ${id} is outside the vocabulary (${V})`);
      this.ctx.device.queue.writeBuffer(s.ids, 0, chunk);
      await this.step(T, { ...opts, logits: all ? 'all' : 'last' });
      this.cache.position += T;
      if (all) out.set(await this.ctx.readF32(s.allLogits(this.ctx, V), T * V), start * V);
      else if (start + T === n) out.set(await this.ctx.readF32(s.logits, V));
    }
    return out;
  }

  /**
   * Run `ids` and choose the next token on the GPU (argmax when temperature is 0), reading back only the id.
   * `history` (prompt + generated ids) feeds the repetition penalty.
   */
  async nextToken(ids: ArrayLike<number>, sampling: SampleParams, history: number[] = []): Promise<number> {
    if (ids.length > 1) await this.forward(Array.prototype.slice.call(ids, 0, -1) as number[]);
    return (await this.submitToken(ids[ids.length - 1], sampling, history)).read();
  }

  /**
   * Run one token and sample the next on the GPU, without waiting for it. The sampled id lands in scratch.ids,
   * where the next submitToken(undefined, ...) embeds it with no round trip, and in a readback slot that read()
   * maps: so a decode loop can queue token n+1 before it reads token n, and the CPU encodes one step while the GPU
   * runs the other. `id` undefined means the id the previous step sampled (still unknown to the CPU). A repetition
   * penalty needs every id on the CPU (`history`), so a penalised step needs `id`. Streaming steps run layer by
   * layer and resolve after their last submit.
   */
  async submitToken(id: number | undefined, sampling: SampleParams, history: number[] = []): Promise<PendingToken> {
    const s = this.forwardBuilder.scratch, V = this.config.vocabSize;
    this.checkContext(1);
    const penalty = sampling.repetitionPenalty !== undefined && sampling.repetitionPenalty !== 1 && history.length > 0;
    if (id !== undefined) {
      if (!(id >= 0 && id < V)) throw new RangeError(`token id ${id} is outside the vocabulary (${V})`);
      this.ctx.device.queue.writeBuffer(s.ids, 0, Uint32Array.of(id));
    } else if (penalty) {
      throw new Error('submitToken: a repetition penalty needs the fed id on the CPU');
    }
    if (penalty) {
      if (!this.history || this.history.size < history.length * 4) this.history = this.ctx.buffer(Math.max(1024, history.length * 8), 'history');
      this.ctx.device.queue.writeBuffer(this.history, 0, Uint32Array.from(history));
    }
    const slot = this.idleSlots.pop() ?? this.ctx.device.createBuffer({ size: 4, usage: Usage.MAP_READ | Usage.COPY_DST, label: 'sampled id' });
    const picked = { buffer: s.ids, offset: 0, size: 4 };
    const after: Step[] = [
      ...sample(this.ctx, s.logits, picked, V, penalty ? { ...sampling, previous: { ids: this.history!, count: history.length } } : sampling),
      { label: 'read sampled id', copy: { src: s.ids, srcOffset: 0, dst: slot, dstOffset: 0, size: 4 } },
    ];
    try {
      await this.step(1, { logits: 'last' }, after);
    } catch (e) {
      this.idleSlots.push(slot);
      throw e;
    }
    this.cache.position += 1;
    // Map now, before any later step is submitted: a map waits for the work queued before it, so one requested
    // after step n+1's submit would also wait for step n+1 and undo the overlap.
    const mapped = slot.mapAsync(1 /* GPUMapMode.READ */);
    mapped.catch(() => {}); // a lost device: read() still rejects; an unread token must not be an unhandled rejection
    let taken = false;
    const take = () => {
      if (taken) throw new Error('submitToken: a pending token is read or discarded once');
      taken = true;
    };
    return {
      read: async () => {
        take();
        await mapped;
        const value = new Uint32Array(slot.getMappedRange())[0];
        slot.unmap();
        this.idleSlots.push(slot);
        return value;
      },
      discard: () => {
        take();
        mapped.then(() => (slot.unmap(), this.idleSlots.push(slot)), () => {}); // a lost device drops the slot
      },
    };
  }

  /** One step of T tokens (ids in scratch.ids), then `after`: one submit when resident, layer by layer when streaming. */
  private async step(T: number, opts: StepOptions, after: Step[] = []): Promise<void> {
    if (!this.experts) {
      const decode = T === 1 && !opts.taps?.length;
      this.ctx.run([...(decode ? this.forwardBuilder.decodeOps(opts) : this.forwardBuilder.build(T, opts)), ...after]);
      return;
    }
    const fb = this.forwardBuilder, xc = this.experts, L = this.config.numLayers, k = this.config.numExpertsPerTok;
    const st = fb.begin(T, opts);
    xc.beginStep();
    fb.head(st);
    for (let l = 0; l < L; l++) {
      fb.layerPre(st, l);
      const guess = xc.prefetch && l + 1 < L;
      if (guess) fb.predictRouter(st, l + 1);
      const t0 = performance.now();
      let [idx, pred] = await this.readRouting(st.ops, T * k, guess);
      st.ops.length = 0;
      xc.addReadback(l, performance.now() - t0);
      if (this.routingTrace) {
        const r = this.routingTrace(l, T);
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
      fb.layerPost(st, l);
    }
    fb.tail(st);
    this.ctx.run([...st.ops, ...after]);
    xc.endStep();
  }

  /** Submit `ops` plus copies of the router's idx (and the next layer's guess) and map them: one readback per layer. */
  private async readRouting(ops: Step[], n: number, guess: boolean): Promise<[Uint32Array<ArrayBuffer>, Uint32Array<ArrayBuffer> | undefined]> {
    const s = this.forwardBuilder.scratch, bytes = n * 4;
    const half = s.maxT * this.config.numExpertsPerTok * 4;
    this.routing ??= this.ctx.device.createBuffer({ size: 2 * half, usage: Usage.MAP_READ | Usage.COPY_DST, label: 'routing readback' });
    const rb = this.routing;
    const copies: Step[] = [{ label: 'read idx', copy: { src: s.topIdx, srcOffset: 0, dst: rb, dstOffset: 0, size: bytes } }];
    if (guess) copies.push({ label: 'read guess', copy: { src: this.forwardBuilder.streamScratch.predIdx, srcOffset: 0, dst: rb, dstOffset: half, size: bytes } });
    this.ctx.run([...ops, ...copies]);
    await rb.mapAsync(1 /* GPUMapMode.READ */, 0, 2 * half);
    const m = rb.getMappedRange(0, 2 * half);
    const idx = new Uint32Array(m.slice(0, bytes));
    const pred = guess ? new Uint32Array(m.slice(half, half + bytes)) : undefined;
    rb.unmap();
    return [idx, pred];
  }

  /** Expert-cache telemetry (totals and the last step's per-layer numbers); undefined when fully resident. */
  expertStats(): ExpertCacheStats | undefined {
    return this.experts?.stats();
  }

  private checkContext(n: number) {
    if (this.cache.position + n > this.cache.maxT) {
      throw new ContextLengthError(
        `${this.cache.position} cached + ${n} new tokens exceed the context of ${this.cache.maxT}. Start a new conversation or load the model with a larger maxContext.`,
        this.cache.position + n,
        this.cache.maxT,
      );
    }
  }

  readTap(name: string): Promise<Float32Array> {
    return this.forwardBuilder.readTap(name);
  }

  reset(): void {
    this.cache.reset();
  }
}
