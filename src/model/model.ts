// Qwen3NextForCausalLM on the GPU: weights, cache and the forward op lists, with a small API:
// forward(ids) runs any number of tokens from the cache's position (split into steps of at most
// maxTokensPerStep, so a long prompt never needs (T, P) scratch for all of it at once).
import type { Checkpoint } from '../checkpoint/checkpoint.ts';
import { ContextLengthError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { sample, type SampleParams } from '../gpu/kernels/sample.ts';
import { Qwen3NextGpuCache } from './cache.ts';
import { ForwardBuilder, type StepOptions } from './forward.ts';
import { loadGpuWeights, type GpuWeights } from './gpu-weights.ts';
import { checkpointSource, QUANT_F32, type QuantConfig, type WeightSource } from './pack.ts';

export interface ModelOptions {
  quant?: QuantConfig;
  /** KV-cache capacity in tokens (default: min(max_position_embeddings, 4096)). */
  maxContext?: number;
  /** Largest prefill step (default 256 tokens). */
  maxTokensPerStep?: number;
}

export class Qwen3NextGpuModel {
  readonly cache: Qwen3NextGpuCache;
  readonly forwardBuilder: ForwardBuilder;
  private readonly token: GPUBuffer; // (1) u32 the sampled id
  private history?: GPUBuffer; // (n) u32 ids for the repetition penalty

  private constructor(readonly ctx: GpuContext, readonly weights: GpuWeights, maxContext: number, readonly maxTokensPerStep: number) {
    this.cache = new Qwen3NextGpuCache(ctx, weights.config, maxContext);
    this.forwardBuilder = new ForwardBuilder(ctx, weights, this.cache, maxTokensPerStep);
    this.token = ctx.buffer(4, 'next_token');
  }

  /** From a Hugging Face checkpoint, quantized while loading. */
  static fromCheckpoint(ctx: GpuContext, ckpt: Checkpoint, opts: ModelOptions = {}): Promise<Qwen3NextGpuModel> {
    return Qwen3NextGpuModel.load(ctx, checkpointSource(ckpt, opts.quant ?? QUANT_F32), opts);
  }

  static async load(ctx: GpuContext, src: WeightSource, opts: Omit<ModelOptions, 'quant'> = {}): Promise<Qwen3NextGpuModel> {
    const weights = await loadGpuWeights(ctx, src);
    const maxContext = opts.maxContext ?? Math.min(src.config.maxPositionEmbeddings, 4096);
    return new Qwen3NextGpuModel(ctx, weights, maxContext, opts.maxTokensPerStep ?? 256);
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
      const ops = this.forwardBuilder.build(T, { ...opts, logits: all ? 'all' : 'last' });
      this.ctx.run(ops);
      this.cache.position += T;
      if (all) out.set(await this.ctx.readF32(s.logits, T * V), start * V);
      else if (start + T === n) out.set(await this.ctx.readF32(s.logits, V));
    }
    return out;
  }

  /**
   * Run `ids` and choose the next token on the GPU (argmax when temperature is 0), reading back only the id.
   * `history` (prompt + generated ids) feeds the repetition penalty.
   */
  async nextToken(ids: ArrayLike<number>, sampling: SampleParams, history: number[] = []): Promise<number> {
    const s = this.forwardBuilder.scratch, V = this.config.vocabSize;
    if (ids.length > 1) await this.forward(Array.prototype.slice.call(ids, 0, -1) as number[]);
    this.checkContext(1);
    this.ctx.device.queue.writeBuffer(s.ids, 0, Uint32Array.of(ids[ids.length - 1]));
    const ops = this.forwardBuilder.build(1, { logits: 'last' });
    const penalty = sampling.repetitionPenalty !== undefined && sampling.repetitionPenalty !== 1 && history.length > 0;
    if (penalty) {
      if (!this.history || this.history.size < history.length * 4) this.history = this.ctx.buffer(Math.max(1024, history.length * 8), 'history');
      this.ctx.device.queue.writeBuffer(this.history, 0, Uint32Array.from(history));
    }
    ops.push(...sample(this.ctx, s.logits, this.token, V, penalty ? { ...sampling, previous: { ids: this.history!, count: history.length } } : sampling));
    this.ctx.run(ops);
    this.cache.position += 1;
    return new Uint32Array(await this.ctx.read(this.token, 4))[0];
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
