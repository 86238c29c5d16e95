// Qwen3NextForCausalLM on the GPU: weights, cache and the forward op lists, with a small API:
// forward(ids) runs any number of tokens from the cache's position (split into steps of at most
// maxTokensPerStep, so a long prompt never needs (T, P) scratch for all of it at once), and submitToken runs one
// decode step that samples the next token on the GPU. How a step's ops reach the GPU is a StepRunner: resident
// (one submit) here, or streaming its routed experts layer by layer (src/cache/streaming-step.ts).
import type { Checkpoint } from '../checkpoint/checkpoint.ts';
import { modelContextLimit, withYarn, type Qwen3NextConfig, type YarnOption } from '../config.ts';
import { ConfigError, ContextLengthError, DeviceLimitError } from '../errors.ts';
import { checkAttnShape, kvElementBytes } from '../kernels/attention.ts';
import { checkConvWidth } from '../kernels/conv.ts';
import { checkGdnShape } from '../kernels/gdn.ts';
import type { GpuContext, Step } from '../gpu/context.ts';
import { checkVocab, type SampleParams } from '../kernels/sample.ts';
import { Qwen3NextGpuDynamicCache } from './dynamic-cache.ts';
import { ForwardBuilder, type StepOptions } from './forward.ts';
import { destroyGpuWeights, loadGpuWeights, type GpuWeights } from './gpu-weights.ts';
import { TokenPicker, type PendingToken } from './next-token.ts';
import { Qwen3NextGpuMultiTokenPredictor } from './mtp.ts';
import { checkpointSource, QUANT_F32, type QuantConfig, type WeightSource } from '../format/pack.ts';

export interface ModelOptions {
  quant?: QuantConfig;
  /** KV-cache capacity in tokens (default: min(max_position_embeddings, 4096)); at most modelContextLimit(config). */
  maxContext?: number;
  /** YaRN on or off whatever config.json says (src/config.ts withYarn; default: the config's). */
  yarn?: YarnOption;
  /** K/V cache precision (default 'f16': half the memory and the bytes each decode token reads; 'f32': exact). */
  kvCache?: 'f16' | 'f32';
  /** Load the multi-token-prediction layer too, when the source has it (model.mtp; src/model/mtp.ts). */
  mtp?: boolean;
  /** Largest prefill step (default 256 tokens). */
  maxTokensPerStep?: number;
  /** GPU slots per layer for routed experts (default: all E, fully resident). Fewer need a `steps` that streams. */
  expertSlots?: number;
  /** How steps run (default: resident, one submit a step); src/cache/load.ts passes a streaming one. */
  steps?: (ctx: GpuContext, weights: GpuWeights, fb: ForwardBuilder) => StepRunner;
}

/** What model.forward calls around each of its steps (of at most maxTokensPerStep tokens). */
export interface ForwardHooks {
  /** Ops added to the step's submit (the MTP layer following a prompt: src/model/speculative.ts). */
  after?: (start: number, T: number) => Step[];
  /** Told when the GPU has run each step: `done` of `total` tokens (a long prompt's progress). */
  progress?: (done: number, total: number) => void;
}

/**
 * Runs `before` (ops that put the step's ids in scratch.ids, or that read the scratch of the step before), one step
 * of T tokens, then `after` (the sampler, copies out), and submits it all.
 */
export interface StepRunner {
  run(T: number, opts: StepOptions, after: Step[], before?: Step[]): Promise<void>;
}

/** Every weight resident: a step is one submit; a decode token and a verify step replay their cached op lists. */
class ResidentSteps implements StepRunner {
  constructor(private readonly ctx: GpuContext, private readonly fb: ForwardBuilder) {}

  async run(T: number, opts: StepOptions, after: Step[], before: Step[] = []): Promise<void> {
    const replay = !opts.taps?.length && (T === 1 || opts.stepStates);
    this.ctx.run([...before, ...(replay ? this.fb.replayOps(T, opts) : this.fb.build(T, opts)), ...after], opts.submits);
  }
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

/**
 * A maxContext past the positions the model was made for is refused (RoPE past them is untrained; YaRN extends
 * them), and one whose K/V cache of a layer would not fit one storage binding of this device.
 */
function checkContext(device: GPUDevice, c: Qwen3NextConfig, maxContext: number | undefined, halfKv: boolean): void {
  if (maxContext === undefined) return;
  const n = (x: number) => x.toLocaleString('en-US');
  const limit = modelContextLimit(c);
  if (maxContext > limit) {
    const yarn = c.ropeScaling.type === 'yarn' ? '' : ` Turn on YaRN (engine option \`yarn: true\`, CLI --yarn) for up to ${n(modelContextLimit(withYarn(c, true)))}.`;
    throw new ContextLengthError(`maxContext ${n(maxContext)} is past the ${n(limit)} positions this model was made for.${yarn} Lower maxContext otherwise.`, maxContext, limit);
  }
  const perToken = c.numKeyValueHeads * c.headDim * kvElementBytes(halfKv), binding = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
  const fits = Math.floor(binding / perToken);
  if (maxContext > fits) {
    const f16 = halfKv ? '' : ` (${n(Math.floor(binding / (perToken / 2)))} with kvCache 'f16')`;
    throw new ContextLengthError(
      `maxContext ${n(maxContext)} needs K/V buffers of ${(maxContext * perToken / 2 ** 20).toFixed(0)} MiB a layer, over this device's largest storage binding of ${(binding / 2 ** 20).toFixed(0)} MiB: ` +
        `at most ${n(fits)} tokens here${f16}. Lower maxContext.`, maxContext, fits);
  }
}

export class Qwen3NextGpuModel {
  readonly cache: Qwen3NextGpuDynamicCache;
  readonly forwardBuilder: ForwardBuilder;
  readonly steps: StepRunner;
  /** The MTP layer, when loaded with `mtp` from a source that has it. */
  readonly mtp?: Qwen3NextGpuMultiTokenPredictor;
  private readonly picker: TokenPicker;

  constructor(readonly ctx: GpuContext, readonly weights: GpuWeights, opts: Pick<ModelOptions, 'maxContext' | 'maxTokensPerStep' | 'steps' | 'kvCache'> = {}) {
    const c = weights.config;
    this.cache = new Qwen3NextGpuDynamicCache(ctx, c, opts.maxContext ?? Math.min(c.maxPositionEmbeddings, 4096), (opts.kvCache ?? 'f16') === 'f16');
    this.forwardBuilder = new ForwardBuilder(ctx, weights, this.cache, opts.maxTokensPerStep ?? 256);
    if (weights.layers[0].experts.slots < c.numExperts && !opts.steps) throw new Error('Qwen3NextGpuModel: streaming expert slots need a streaming `steps` (src/cache/load.ts)');
    this.steps = opts.steps?.(ctx, weights, this.forwardBuilder) ?? new ResidentSteps(ctx, this.forwardBuilder);
    this.picker = new TokenPicker(ctx, this.forwardBuilder.scratch.logits, this.forwardBuilder.scratch.ids, c.vocabSize);
    if (weights.mtp) this.mtp = new Qwen3NextGpuMultiTokenPredictor(ctx, this.forwardBuilder, weights.mtp);
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
  static async load(ctx: GpuContext, source: WeightSource, opts: Omit<ModelOptions, 'quant'> = {}): Promise<Qwen3NextGpuModel> {
    const src = opts.yarn === undefined ? source : { ...source, config: withYarn(source.config, opts.yarn) };
    checkKernelShapes(src.config);
    checkContext(ctx.device, src.config, opts.maxContext, (opts.kvCache ?? 'f16') === 'f16');
    const device = ctx.device;
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    let weights: GpuWeights | undefined, model: Qwen3NextGpuModel | undefined, failure: unknown;
    try {
      weights = await loadGpuWeights(ctx, src, opts.expertSlots, opts.mtp);
      model = new Qwen3NextGpuModel(ctx, weights, opts);
      if (model.steps instanceof ResidentSteps) model.forwardBuilder.replayOps(1, { logits: 'last' }); // kept: the first token replays it
      else model.forwardBuilder.build(1, { logits: 'last' });
      model.forwardBuilder.build(Math.min(model.maxTokensPerStep, model.cache.maxT), { logits: 'last' });
    } catch (e) {
      failure = e;
    }
    const invalid = await device.popErrorScope(), oom = await device.popErrorScope();
    if (oom || invalid) {
      model?.cache.destroy();
      if (weights) destroyGpuWeights(weights);
      if (oom) {
        const c = src.config, maxT = opts.maxContext ?? Math.min(c.maxPositionEmbeddings, 4096);
        const kv = c.layerTypes.filter((t) => t === 'full_attention').length * 2 * c.numKeyValueHeads * c.headDim * kvElementBytes((opts.kvCache ?? 'f16') === 'f16') * maxT;
        throw new DeviceLimitError(
          `The GPU ran out of memory loading the model (${oom.message}); its K/V cache for ${maxT.toLocaleString('en-US')} tokens of context takes ${(kv / 2 ** 30).toFixed(2)} GiB of it. ` +
            'Give it a smaller expertCacheBytes (experts then stream from storage), a smaller maxContext, or close other GPU-heavy tabs.', 'out-of-memory');
      }
      throw new DeviceLimitError(`This device cannot run the model's kernels at this shape (${invalid!.message}). Try a smaller maxTokensPerStep or maxContext; a model wider than this runtime's kernels support needs a device with larger limits.`, 'limits');
    }
    if (failure !== undefined) throw failure;
    return model!;
  }

  get maxTokensPerStep(): number {
    return this.forwardBuilder.scratch.maxT;
  }

  get config() {
    return this.weights.config;
  }

  /**
   * Run `ids` from the cache's position. Returns logits (rows, V): rows = ids.length for logits 'all',
   * 1 (the last token) for 'last'. Taps are read from the last step. See ForwardHooks.
   */
  async forward(ids: ArrayLike<number>, opts: Partial<StepOptions> = {}, hooks: ForwardHooks = {}): Promise<Float32Array> {
    const all = (opts.logits ?? 'last') === 'all';
    const V = this.config.vocabSize, n = ids.length;
    if (n === 0) throw new RangeError('forward: no tokens');
    this.assertContext(n);
    const out = new Float32Array((all ? n : 1) * V);
    const s = this.forwardBuilder.scratch;
    for (let start = 0; start < n; start += this.maxTokensPerStep) {
      const T = Math.min(this.maxTokensPerStep, n - start);
      const chunk = Uint32Array.from({ length: T }, (_, i) => ids[start + i]);
      for (const id of chunk) if (id >= V) throw new RangeError(`token id ${id} is outside the vocabulary (${V})`);
      this.ctx.device.queue.writeBuffer(s.ids, 0, chunk);
      await this.step(T, { ...opts, logits: all ? 'all' : 'last' }, hooks.after?.(start, T));
      this.cache.position += T;
      const progress = hooks.progress, done = start + T;
      // when the GPU has run the step, without waiting for it here (the next step is encoded meanwhile)
      if (progress) this.ctx.device.queue.onSubmittedWorkDone().then(() => progress(done, n), () => {});
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
    const V = this.config.vocabSize;
    this.assertContext(1);
    const penalty = sampling.repetitionPenalty !== undefined && sampling.repetitionPenalty !== 1 && history.length > 0;
    if (id !== undefined) {
      if (!(id >= 0 && id < V)) throw new RangeError(`token id ${id} is outside the vocabulary (${V})`);
      this.ctx.device.queue.writeBuffer(this.forwardBuilder.scratch.ids, 0, Uint32Array.of(id));
    } else if (penalty) {
      throw new Error('submitToken: a repetition penalty needs the fed id on the CPU');
    }
    const pick = this.picker.prepare(sampling, penalty ? history : undefined);
    try {
      await this.step(1, { logits: 'last' }, pick.after);
    } catch (e) {
      pick.cancel();
      throw e;
    }
    this.cache.position += 1;
    return pick.submitted();
  }

  private step(T: number, opts: StepOptions, after: Step[] = []): Promise<void> {
    return this.steps.run(T, opts, after);
  }

  /** Throws ContextLengthError unless n more tokens fit the cache. */
  assertContext(n: number): void {
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
