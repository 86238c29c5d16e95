// Activation buffers of the forward op lists (forward.ts), sized for up to maxT tokens a step and reused by
// every layer. Shapes in the comments: T tokens of the step.
import type { Qwen3NextConfig } from '../config.ts';
import type { GpuContext } from '../gpu/context.ts';
import { gdnChunkedScratchBytes } from '../kernels/gdn.ts';
import { createMoeScratch, type MoeScratch } from '../kernels/moe.ts';
import type { WeightFormat } from '../quant/formats.ts';

export const moeShape = (c: Qwen3NextConfig, format: WeightFormat) => ({ E: c.numExperts, k: c.numExpertsPerTok, H: c.hiddenSize, I: c.moeIntermediateSize, format });

/** Activation buffers for up to `maxT` tokens per step, reused by every layer. */
export class Scratch {
  readonly ids: GPUBuffer; // (T) u32
  readonly h: GPUBuffer; // (T, H) residual stream (one token: the embedding; then `resid` ping-pongs)
  readonly resid: [GPUBuffer, GPUBuffer]; // (1, H) one token's residual stream, written by every layer's router GEMV
  readonly moeOut: GPUBuffer; // (1, H) one token's MoE output, added to the residual by the next reader
  readonly xn: GPUBuffer; // (T, H) normed input of a mixer / the MoE
  readonly mix: GPUBuffer; // (T, H) mixer or MoE output before the residual add
  readonly proj: GPUBuffer; // (T, max(P_gdn, Q_attn)) fused input projection
  readonly conv: GPUBuffer; // (T, convDim)
  readonly q: GPUBuffer; // (T, max(Hk·dk, Hq·D))
  readonly k: GPUBuffer; // (T, Hk·dk)
  readonly g: GPUBuffer; // (T, Hv)
  readonly beta: GPUBuffer; // (T, Hv)
  readonly core: GPUBuffer; // (T, max(valueDim, Hq·D)) GDN core output / attention output
  readonly gate: GPUBuffer; // (T, Hq·D) attention output gate
  readonly normed: GPUBuffer; // (T, valueDim) gated-norm output
  readonly routerLogits: GPUBuffer; // (T, E+1)
  readonly topIdx: GPUBuffer; // (T, k) u32
  readonly topW: GPUBuffer; // (T, k)
  readonly sharedMid: GPUBuffer; // (T, 2·Is)
  readonly shared: GPUBuffer; // (T, H)
  readonly logits: GPUBuffer; // (1, V) the last row's logits (generation)
  private allRows?: GPUBuffer; // (maxT, V) every row's logits, made on the first 'all' step (tests, perplexity)
  readonly gdnChunk: GPUBuffer; // chunked-GDN intermediates (see gdnChunkedScratchBytes)
  readonly moe: MoeScratch;

  constructor(ctx: GpuContext, c: Qwen3NextConfig, readonly maxT: number, expertFormat: WeightFormat) {
    const f = (n: number, label: string) => ctx.buffer(maxT * n * 4, label);
    const P = 2 * c.keyDim + 2 * c.valueDim + 2 * c.linearNumValueHeads;
    const Q = c.numAttentionHeads * 2 * c.headDim + 2 * c.numKeyValueHeads * c.headDim;
    const attnOut = c.numAttentionHeads * c.headDim;
    this.ids = f(1, 'ids');
    this.h = f(c.hiddenSize, 'h');
    this.resid = [ctx.buffer(c.hiddenSize * 4, 'resid.0'), ctx.buffer(c.hiddenSize * 4, 'resid.1')];
    this.moeOut = ctx.buffer(c.hiddenSize * 4, 'moe_out');
    this.xn = f(c.hiddenSize, 'xn');
    this.mix = f(c.hiddenSize, 'mix');
    this.proj = f(Math.max(P, Q), 'proj');
    this.conv = f(c.convDim, 'conv');
    this.q = f(Math.max(c.keyDim, attnOut), 'q');
    this.k = f(c.keyDim, 'k');
    this.g = f(c.linearNumValueHeads, 'g');
    this.beta = f(c.linearNumValueHeads, 'beta');
    this.core = f(Math.max(c.valueDim, attnOut), 'core');
    this.gate = f(attnOut, 'gate');
    this.normed = f(c.valueDim, 'normed');
    this.routerLogits = f(c.numExperts + 1, 'router_logits');
    this.topIdx = f(c.numExpertsPerTok, 'top_idx');
    this.topW = f(c.numExpertsPerTok, 'top_w');
    this.sharedMid = f(2 * c.sharedExpertIntermediateSize, 'shared_mid');
    this.shared = f(c.hiddenSize, 'shared');
    this.logits = ctx.buffer(c.vocabSize * 4, 'logits');
    this.gdnChunk = ctx.buffer(gdnChunkedScratchBytes(maxT, c), 'gdn_chunk');
    this.moe = createMoeScratch(ctx, maxT, moeShape(c, expertFormat));
  }

  /** (maxT, V) logits for 'all' steps: only a model that scores every row pays for them (155 MB at the 80B shape). */
  allLogits(ctx: GpuContext, V: number): GPUBuffer {
    return (this.allRows ??= ctx.buffer(this.maxT * V * 4, 'logits (all rows)'));
  }
}

/** Buffers a streaming step needs besides the resident ones, made on first use. */
export class StreamScratch {
  readonly predLogits: GPUBuffer; // (T, E+1) next layer's router applied to this layer's MoE input
  readonly predIdx: GPUBuffer; // (T, k) u32
  readonly predW: GPUBuffer; // (T, k)
  // A sub-batch's rows [start, end) copied to row 0, so the MoE kernels run on a plain T = end - start call.
  readonly x: GPUBuffer; // (T, H)
  readonly logits: GPUBuffer; // (T, E+1)
  readonly idx: GPUBuffer; // (T, k) u32
  readonly w: GPUBuffer; // (T, k)
  readonly shared: GPUBuffer; // (T, H)
  readonly out: GPUBuffer; // (T, H)

  constructor(ctx: GpuContext, c: Qwen3NextConfig, maxT: number) {
    const f = (n: number, label: string) => ctx.buffer(maxT * n * 4, label);
    const E1 = c.numExperts + 1, k = c.numExpertsPerTok, H = c.hiddenSize;
    this.predLogits = f(E1, 'pred_logits');
    this.predIdx = f(k, 'pred_idx');
    this.predW = f(k, 'pred_w');
    this.x = f(H, 'sub.x');
    this.logits = f(E1, 'sub.logits');
    this.idx = f(k, 'sub.idx');
    this.w = f(k, 'sub.w');
    this.shared = f(H, 'sub.shared');
    this.out = f(H, 'sub.out');
  }
}
