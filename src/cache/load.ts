// Loading a model with a GPU budget for its routed experts: fully resident when they fit, else streaming from
// the source through the expert cache (src/cache/streaming-step.ts). The model layer knows only that some
// StepRunner runs its steps; this is where the budget picks which.
import type { GpuContext } from '../gpu/context.ts';
import { expertLayout, type WeightSource } from '../format/pack.ts';
import { Qwen3NextGpuModel, type ModelOptions } from '../model/model.ts';
import type { ExpertCacheStats } from './expert-cache.ts';
import { StreamingStep, type StreamingOptions } from './streaming-step.ts';

export interface LoadOptions extends Omit<ModelOptions, 'expertSlots' | 'steps'>, StreamingOptions {
  /**
   * GPU bytes for routed experts, split evenly over the layers (default: all of them, fully resident). When they
   * do not all fit, steps run layer by layer and stream experts from the source; each layer gets at least
   * top_k + 2 slots whatever the budget.
   */
  expertCacheBytes?: number;
  /**
   * Stream the routed experts even when the budget holds them all: a store that does not have them all yet (an
   * IdbModelStore still filling) can give each only when a token needs it.
   */
  streamExperts?: boolean;
}

/**
 * Expert slots per layer for a byte budget: all E when it fits, else at least top_k + 2. Streamed whatever the
 * budget: at most E - 1 (fewer slots than experts is what makes gpu-weights.ts leave them to the expert cache).
 */
export function expertSlotsFor(src: WeightSource, expertCacheBytes?: number, streamed = false): number {
  const c = src.config, E = c.numExperts, most = streamed ? E - 1 : E;
  if (expertCacheBytes === undefined) return most;
  const recordBytes = expertLayout(c, src.quant.experts).words * 4;
  const fit = Math.floor(expertCacheBytes / (c.numLayers * recordBytes));
  return Math.min(most, Math.max(fit, c.numExpertsPerTok + 2));
}

/** Weights onto the GPU (Qwen3NextGpuModel.load), streaming the routed experts when the budget is short. */
export function loadModel(ctx: GpuContext, src: WeightSource, opts: LoadOptions = {}): Promise<Qwen3NextGpuModel> {
  const expertSlots = expertSlotsFor(src, opts.expertCacheBytes, opts.streamExperts);
  const steps = expertSlots < src.config.numExperts ? streaming(src, opts) : undefined;
  return Qwen3NextGpuModel.load(ctx, src, { ...opts, expertSlots, steps });
}

/** The `steps` factory of a model whose expert slots (weights.layers[i].experts) are fewer than E. */
export function streaming(src: WeightSource, opts: StreamingOptions = {}): ModelOptions['steps'] {
  return (ctx, weights, fb) => new StreamingStep(ctx, src, weights, fb, opts);
}

/** Expert-cache telemetry of a streaming model (totals and the last step's per-layer numbers); undefined when resident. */
export function expertStats(model: Qwen3NextGpuModel): ExpertCacheStats | undefined {
  return model.steps instanceof StreamingStep ? model.steps.stats() : undefined;
}

/**
 * How much a streaming model's routers have wanted each expert so far (their probabilities summed over the tokens,
 * StreamingOptions.routerMass); 0 for a layer it has none of (the MTP layer's). Undefined when resident.
 */
export function routerMass(model: Qwen3NextGpuModel): ((layer: number, expert: number) => number) | undefined {
  if (!(model.steps instanceof StreamingStep)) return undefined;
  const mass = model.steps.experts.routerMass;
  return (layer, expert) => mass[layer]?.[expert] ?? 0;
}
