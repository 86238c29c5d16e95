// The Qwen3-Next forward pass on the GPU as a flat op list per step (prefill chunk or decode token),
// encoded once and submitted once. Reading order follows execution order (REFERENCE.md §2-5):
//   embed -> for each layer: norm -> (Gated DeltaNet | gated attention) -> +residual -> norm -> MoE -> +residual
//   -> final norm -> lm_head.
// The layer loop is written once, in walk(): it stops at each layer's routed experts and lets its caller encode
// them, so the resident steps (build, decodeOps) and the streaming step (src/cache/streaming-step.ts, which first
// reads the layer's routing back and makes its experts resident) share every other op.
//
// Two encodings of a layer. Many tokens (prefill, streaming, taps): each residual add and the norm after it are one
// dispatch (addRmsNorm), every intermediate lands in scratch. One token (decode) is dispatch-bound, so it fuses
// (the "token" methods; a streaming step only runs the router's top-k as its own op, to read it back): every norm runs in the prologue of the GEMV that reads it (gemv.wgsl), each residual
// add is deferred to the next reader (StepOps.resid: the router GEMV of each layer writes the stream, ping-pong), the
// GDN conv runs in in_proj's epilogue, the GDN prep in its recurrent step, the gated norm in out_proj's prologue,
// the router's top-k and the post-attention norm in the MoE gate/up GEMV's prologue, the MoE down GEMVs do the
// combine, and a shared expert with an expert's shape runs as one more expert pair (gpu-weights.ts
// sharedExpertFits), and attention prepares its own queries and key (attentionDecode): 6 dispatches a GDN layer,
// 7 an attention layer at the 80B shape.
// Named taps copy any intermediate tensor out for tests (`L3.mixer_out`, `L0.gdn.core_out`, ...).
import type { Qwen3NextConfig } from '../config.ts';
import { bufferId, type GpuContext, type Step, type Binding } from '../gpu/context.ts';
import type { GpuWeight } from '../gpu/packed-weight.ts';
import { addRmsNorm, rmsNorm, rmsNormGated } from '../kernels/norm.ts';
import { matmul, type GemvPrologue } from '../kernels/matmul.ts';
import { embed } from '../kernels/embed.ts';
import { causalConv1d } from '../kernels/conv.ts';
import { gdnPrep, gdnChunked, gdnRecurrent, gdnStep } from '../kernels/gdn.ts';
import { attnPrep, attention, attentionDecode, attentionDecodeFits, decodeSplitLen, replaySplitLen, type AttnDims, type PositionUpdate } from '../kernels/attention.ts';
import { fusedRouteShape, router, moeDecode, moePrefill, moeExperts, takesDecodePath, type MoeBuffers } from '../kernels/moe.ts';
import type { GpuWeights, GpuLayer } from './gpu-weights.ts';
import type { Qwen3NextGpuDynamicCache, LinearLayerCache, FullLayerCache } from './dynamic-cache.ts';
import { moeShape, Scratch, StreamScratch } from './scratch.ts';

/** A layer's packed tensor by its name in src/format/pack.ts. */
function layerWeight(layer: GpuLayer, name: string): GpuWeight {
  const w = layer.weights.get(name);
  if (!w) throw new Error(`layer has no tensor ${name}`);
  return w;
}
/** A layer's f32 vector (norm weights, conv taps, A_log, ...) as a binding. */
const layerVector = (layer: GpuLayer, name: string): GPUBuffer => layerWeight(layer, name).buffer;

export interface StepOptions {
  /** 'last': logits of the last token only (generation); 'all': (T, V) (tests, perplexity). */
  logits: 'last' | 'all';
  /** GDN path: chunked (prefill default) or recurrent (decode default). */
  gdn?: 'chunked' | 'recurrent';
  /** MoE path: grouped-by-expert (prefill default) or per-token (decode default). */
  moe?: 'grouped' | 'per-token';
  /** Tensors to copy out, by name. */
  taps?: string[];
  /**
   * A speculative verify step (T >= 2): the GDN runs recurrent and the linear layers also write their states after
   * each token but the last (cache.stepStates), so cache.rollback can keep any prefix of the step.
   */
  stepStates?: boolean;
  /** Where 'all' logits go (T, V) instead of scratch's (maxT, V) rows (a verify step's few rows). */
  logitsInto?: GPUBuffer;
  /** Submit a resident step in this many parts, so the GPU starts before the CPU has encoded all of it (default 1). */
  submits?: number;
}

/** One step's op list under construction: build() runs it whole; a streaming step submits it layer by layer. */
export interface StepOps {
  T: number;
  opts: StepOptions;
  pos0: number; // cache position of the step's first token
  ops: Step[];
  want: Set<string>; // taps asked for
  updates?: PositionUpdate[]; // set when the list is built to be replayed at later positions (decode)
  /** One token without taps: the fused encoding (the "token" methods). */
  token: boolean;
  /** A streaming step: the router's top-k runs as its own op (read back before the experts are made resident). */
  streaming: boolean;
  /** Token encoding: the residual stream as last written, and the layer outputs not yet added to it. */
  resid: { h: GPUBuffer; deltas: GPUBuffer[] };
}

/** An op list built once and replayed every decode (or verify) step; `updates` move it to a new position. */
interface ReplayList {
  key: string;
  ops: Step[];
  updates: PositionUpdate[];
}

export class ForwardBuilder {
  readonly scratch: Scratch;
  private stream?: StreamScratch;
  private readonly taps = new Map<string, { buffer: GPUBuffer; bytes: number }>();
  private readonly replayLists = new Map<number, ReplayList>(); // by T

  constructor(readonly ctx: GpuContext, readonly w: GpuWeights, readonly cache: Qwen3NextGpuDynamicCache, maxTokensPerStep: number) {
    this.scratch = new Scratch(ctx, w.config, maxTokensPerStep, w.quant.experts);
  }

  get streamScratch(): StreamScratch {
    return (this.stream ??= new StreamScratch(this.ctx, this.w.config, this.scratch.maxT));
  }

  private get c(): Qwen3NextConfig {
    return this.w.config;
  }

  /**
   * The step's ops in execution order: the head, then per layer everything up to its routed experts, a yield of
   * the layer index (the caller encodes routedExperts(st, l), or streams them first), the rest of the layer, and
   * the tail. The one place the layer loop is written.
   */
  *walk(st: StepOps): Generator<number, void, void> {
    this.head(st);
    for (let l = 0; l < this.c.numLayers; l++) {
      this.layerPre(st, l);
      yield l;
      this.layerPost(st, l);
    }
    this.tail(st);
  }

  /** The whole op list for T tokens at the cache's current position (ids must already be in scratch.ids). */
  build(T: number, opts: StepOptions): Step[] {
    return this.resident(this.begin(T, opts)).ops;
  }

  /**
   * The op list of a resident step of T tokens without taps (a decode token, a speculative verify step) at the
   * cache's position: built on first use and then only re-pointed at the new position (a few uniform writes), so a
   * token costs no bind-group or buffer creation. One list is kept per T, rebuilt when the attention split length
   * changes (every 8K keys at the real shape for a token) or the options do.
   */
  replayOps(T: number, opts: StepOptions): Step[] {
    if (opts.taps?.length) throw new Error('replayOps: taps need a fresh build()');
    const pos0 = this.cache.position, st0 = this.begin(T, opts);
    const len = st0.token ? decodeSplitLen(pos0 + 1, this.attnDims()) : replaySplitLen(T, pos0, this.attnDims());
    const key = `${opts.logits}|${opts.gdn}|${opts.moe}|${opts.stepStates ? this.cache.stepStateCount : 0}|${opts.logitsInto ? bufferId(opts.logitsInto) : ''}|${len}`;
    let list = this.replayLists.get(T);
    if (list?.key !== key) {
      const st = this.resident({ ...st0, updates: [] });
      this.replayLists.set(T, (list = { key, ops: st.ops, updates: st.updates! }));
    }
    for (const u of list.updates) u(pos0);
    return list.ops;
  }

  /** Walk the step with every layer's routed experts resident. */
  private resident(st: StepOps): StepOps {
    for (const l of this.walk(st)) this.routedExperts(st, l);
    return st;
  }

  /** A step of T tokens at the cache's position (`streaming`: src/cache/streaming-step.ts runs it). */
  begin(T: number, opts: StepOptions, mode: { streaming?: boolean } = {}): StepOps {
    if (T > this.scratch.maxT) throw new Error(`step of ${T} tokens exceeds the scratch size ${this.scratch.maxT}`);
    const want = new Set(opts.taps ?? []), streaming = !!mode.streaming;
    const token = T === 1 && want.size === 0 && opts.gdn !== 'chunked' && opts.moe !== 'grouped' && !opts.stepStates;
    return { T, opts, pos0: this.cache.position, ops: [], want, token, streaming, resid: { h: this.scratch.h, deltas: [] } };
  }

  /** Copy a tensor out under `name` if the step asked for it. */
  private tap(st: StepOps, name: string, buf: GPUBuffer, elems: number) {
    if (!st.want.has(name)) return;
    const bytes = elems * 4;
    let t = this.taps.get(name);
    if (!t || t.buffer.size < bytes) { t = { buffer: this.ctx.buffer(bytes, `tap ${name}`), bytes }; this.taps.set(name, t); }
    t.bytes = bytes;
    st.ops.push({ label: `tap ${name}`, copy: { src: buf, srcOffset: 0, dst: t.buffer, dstOffset: 0, size: bytes } });
  }

  head(st: StepOps): void {
    const s = this.scratch;
    st.ops.push(embed(this.ctx, s.ids, this.w.embed, s.h, st.T));
    this.tap(st, 'embeddings', s.h, st.T * this.c.hiddenSize);
  }

  /**
   * Layer l up to the routed experts: norm -> mixer -> +residual & norm -> router logits and the shared expert. Many
   * tokens: every residual add is fused with the RMSNorm after it, so the input norm of layer l > 0 was already done
   * by layerPost(l - 1), and the router's top-k runs here too.
   */
  layerPre(st: StepOps, l: number): void {
    if (st.token) return this.tokenLayerPre(st, l);
    const { ctx, scratch: s, cache } = this;
    const c = this.c, H = c.hiddenSize, T = st.T, ops = st.ops, tap = this.tap.bind(this, st);
    const layer = this.w.layers[l], lc = cache.layers[l];
    if (l === 0) ops.push(rmsNorm(ctx, s.h, layerVector(layer, 'input_norm'), s.xn, T, H, c.rmsNormEps));
    tap(`L${l}.mixer_in`, s.xn, T * H);
    if (layer.type === 'linear_attention') this.gatedDeltaNet(ops, tap, l, layer, lc as LinearLayerCache, T, st.opts);
    else this.attention(ops, layer, lc as FullLayerCache, T, st.pos0, st.updates);
    tap(`L${l}.mixer_out`, s.mix, T * H);
    ops.push(addRmsNorm(ctx, s.mix, s.h, layerVector(layer, 'post_norm'), s.xn, T, H, c.rmsNormEps));
    tap(`L${l}.moe_in`, s.xn, T * H);
    ops.push(...matmul(ctx, s.xn, layerWeight(layer, 'router'), s.routerLogits, T));
    this.routerTopK(st);
    tap(`L${l}.router_logits`, s.routerLogits, T * (c.numExperts + 1));
    tap(`L${l}.router_idx`, s.topIdx, T * c.numExpertsPerTok);
    tap(`L${l}.router_w`, s.topW, T * c.numExpertsPerTok);
    if (this.sharedAsPair(st, l)) return; // routedExperts runs it with the routed ones
    ops.push(...matmul(ctx, s.xn, layerWeight(layer, 'shared_gate_up'), s.sharedMid, T));
    ops.push(...matmul(ctx, s.sharedMid, layerWeight(layer, 'shared_down'), s.shared, T, { swiglu: true }));
  }

  /**
   * The router's top-k of the step's logits into scratch.topIdx / topW (a resident token routes inside the MoE; a
   * streaming token routes here with the MoE's own reduction shape, so its weights are the resident ones exactly; so
   * does a verify step, whose few tokens would otherwise take the 64-thread prefill router, ~170 us a layer).
   */
  private routerTopK(st: StepOps): void {
    const c = this.c, s = this.scratch;
    const fused = st.token || st.opts.stepStates;
    const shape = fused ? fusedRouteShape(this.ctx, moeShape(c, this.w.quant.experts), c.normTopkProb) : { E: c.numExperts, k: c.numExpertsPerTok, normTopk: c.normTopkProb };
    st.ops.push(router(this.ctx, s.routerLogits, s.topIdx, s.topW, st.T, shape));
  }

  /** Prefetch guess: layer l's router top-k on the current MoE input (of layer l - 1) into streamScratch.predIdx. */
  predictRouter(st: StepOps, l: number): void {
    const { ctx, scratch: s } = this, c = this.c, p = this.streamScratch, w = layerWeight(this.w.layers[l], 'router');
    if (st.token) { // the MoE input is not in scratch: norm the stream again in the GEMV's prologue
      const prologue: GemvPrologue = { kind: 'rmsnorm', weight: layerVector(this.w.layers[l - 1], 'post_norm'), eps: c.rmsNormEps, deltas: [] };
      st.ops.push(...matmul(ctx, st.resid.h, w, p.predLogits, 1, { prologue }));
    } else st.ops.push(...matmul(ctx, s.xn, w, p.predLogits, st.T));
    st.ops.push(router(ctx, p.predLogits, p.predIdx, p.predW, st.T, { E: c.numExperts, k: c.numExpertsPerTok, normTopk: c.normTopkProb }));
  }

  /**
   * Layer l's routed experts + combine into scratch.mix (the token encoding: into scratch.moeOut, routing itself),
   * for all tokens or for rows [range.start, range.end) (a streaming sub-batch: rows copied to row 0 of
   * streamScratch, the MoE run there, its output copied back).
   */
  routedExperts(st: StepOps, l: number, range?: { start: number; end: number }): void {
    const { ctx, scratch: s } = this, c = this.c, layer = this.w.layers[l], e = layer.experts;
    const sharedSlot = this.sharedAsPair(st, l) ? e.sharedSlot : undefined;
    const weights = { slotOf: e.slotOf, gateUp: e.gateUp, down: e.down };
    if (st.token) {
      const b: MoeBuffers = { ...weights, x: st.resid.h, logits: s.routerLogits, idx: s.topIdx, w: s.topW, shared: s.shared, out: s.moeOut };
      const route = { norm: layerVector(layer, 'post_norm'), eps: c.rmsNormEps, normTopk: c.normTopkProb, routed: st.streaming };
      st.ops.push(...moeDecode(ctx, b, 1, moeShape(c, e.format), s.moe, { sharedSlot, route }));
      st.resid.deltas.push(s.moeOut);
      return;
    }
    const moe: typeof moeExperts = sharedSlot !== undefined ? (...a) => moeDecode(...a, { sharedSlot })
      : st.opts.moe === 'per-token' ? moeDecode : st.opts.moe === 'grouped' ? moePrefill : moeExperts;
    if (!range || (range.start === 0 && range.end === st.T)) {
      const b = { ...weights, x: s.xn, logits: s.routerLogits, idx: s.topIdx, w: s.topW, shared: s.shared, out: s.mix };
      st.ops.push(...moe(ctx, b, st.T, moeShape(c, e.format), s.moe));
      return;
    }
    const p = this.streamScratch, n = range.end - range.start, a = range.start;
    const H = c.hiddenSize, E1 = c.numExperts + 1, k = c.numExpertsPerTok;
    const rows = (src: GPUBuffer, dst: GPUBuffer, width: number) =>
      st.ops.push({ label: 'sub-batch rows', copy: { src, srcOffset: a * width * 4, dst, dstOffset: 0, size: n * width * 4 } });
    rows(s.xn, p.x, H);
    rows(s.routerLogits, p.logits, E1);
    rows(s.topIdx, p.idx, k);
    rows(s.topW, p.w, k);
    rows(s.shared, p.shared, H);
    const b = { ...weights, x: p.x, logits: p.logits, idx: p.idx, w: p.w, shared: p.shared, out: p.out };
    st.ops.push(...moe(ctx, b, n, moeShape(c, e.format), s.moe));
    st.ops.push({ label: 'sub-batch out', copy: { src: p.out, srcOffset: 0, dst: s.mix, dstOffset: a * H * 4, size: n * H * 4 } });
  }

  /** +residual fused with the next norm: the next layer's input norm, or the final norm after the last layer. */
  layerPost(st: StepOps, l: number): void {
    if (st.token) return; // the next reader adds the MoE output (StepOps.resid)
    const { ctx, scratch: s } = this, c = this.c, H = c.hiddenSize;
    this.tap(st, `L${l}.moe_out`, s.mix, st.T * H);
    const norm = l + 1 < c.numLayers ? layerVector(this.w.layers[l + 1], 'input_norm') : this.w.norm.buffer;
    st.ops.push(addRmsNorm(ctx, s.mix, s.h, norm, s.xn, st.T, H, c.rmsNormEps));
    this.tap(st, `L${l}.out`, s.h, st.T * H);
  }

  /** lm_head on the final-normed rows (layerPost of the last layer normed them): every row for 'all', the last for generation. */
  tail(st: StepOps): void {
    const { ctx, w, scratch: s } = this, H = this.c.hiddenSize, T = st.T, ops = st.ops;
    if (st.token) {
      const prologue: GemvPrologue = { kind: 'rmsnorm', weight: w.norm.buffer, eps: this.c.rmsNormEps, deltas: st.resid.deltas };
      ops.push(...matmul(ctx, st.resid.h, w.lmHead, st.opts.logits === 'all' ? s.allLogits(ctx, this.c.vocabSize) : s.logits, 1, { prologue }));
      return;
    }
    let rows: Binding = s.xn, n = T;
    if (st.opts.logits === 'last') {
      n = 1;
      rows = { buffer: s.xn, offset: 0, size: H * 4 };
      if (T > 1) {
        ops.push({ label: 'last row', copy: { src: s.xn, srcOffset: (T - 1) * H * 4, dst: s.mix, dstOffset: 0, size: H * 4 } });
        rows = { buffer: s.mix, offset: 0, size: H * 4 };
      }
    }
    const hn = 'usage' in rows ? rows : rows.buffer;
    this.tap(st, 'final_hidden', hn, n * H);
    const all = () => st.opts.logitsInto ?? s.allLogits(ctx, this.c.vocabSize);
    ops.push(...matmul(ctx, rows, w.lmHead, st.opts.logits === 'all' ? all() : s.logits, n));
  }

  attnDims(): AttnDims {
    const c = this.c;
    return { Hq: c.numAttentionHeads, Hkv: c.numKeyValueHeads, D: c.headDim, R: c.rotaryDim, maxT: this.cache.maxT, eps: c.rmsNormEps, ropeScale: this.w.ropeAttentionFactor, halfKv: this.cache.halfKv };
  }

  /** REFERENCE.md §2: fused projection -> conv+SiLU -> gates/L2 -> delta rule -> gated norm -> out_proj. */
  private gatedDeltaNet(ops: Step[], tap: (n: string, b: GPUBuffer, e: number) => void, l: number, layer: GpuLayer, lc: LinearLayerCache, T: number, opts: StepOptions) {
    const { ctx, scratch: s } = this, c = this.c;
    const P = 2 * c.keyDim + 2 * c.valueDim + 2 * c.linearNumValueHeads;
    const recurrent = (opts.gdn ?? (T === 1 || opts.stepStates ? 'recurrent' : 'chunked')) === 'recurrent';
    const tapGates = opts.taps?.some((n) => n === `L${l}.gdn.g` || n === `L${l}.gdn.beta`);
    const states = opts.stepStates && T > 1 ? this.cache.stepStates(T - 1)[l] : undefined;
    if (states && (!recurrent || tapGates)) throw new Error('stepStates: a verify step runs the GDN recurrent, without gate taps');
    ops.push(...matmul(ctx, s.xn, layerWeight(layer, 'in_proj'), s.proj, T));
    ops.push(causalConv1d(ctx, s.proj, P, layerVector(layer, 'conv'), lc.conv, s.conv, T, c.convDim, c.convKernel, states?.conv));
    if (recurrent && !tapGates) {
      ops.push(gdnStep(ctx, s.conv, s.proj, P, layerVector(layer, 'A_log'), layerVector(layer, 'dt_bias'), lc.recurrent, s.core, T, c, states?.recurrent)); // prep fused in
    } else {
      ops.push(gdnPrep(ctx, s.conv, s.proj, P, layerVector(layer, 'A_log'), layerVector(layer, 'dt_bias'), s.q, s.k, s.g, s.beta, T, c));
      tap(`L${l}.gdn.g`, s.g, T * c.linearNumValueHeads);
      tap(`L${l}.gdn.beta`, s.beta, T * c.linearNumValueHeads);
      ops.push(...(recurrent
        ? gdnRecurrent(ctx, s.q, s.k, s.conv, s.g, s.beta, lc.recurrent, s.core, T, c)
        : gdnChunked(ctx, s.q, s.k, s.conv, s.g, s.beta, lc.recurrent, s.core, T, c, s.gdnChunk)));
    }
    tap(`L${l}.gdn.core_out`, s.core, T * c.valueDim);
    ops.push(rmsNormGated(ctx, s.core, s.proj, P, layerVector(layer, 'gated_norm'), s.normed, T * c.linearNumValueHeads, c.linearValueHeadDim, c.rmsNormEps, c.linearNumValueHeads, c.convDim));
    ops.push(...matmul(ctx, s.normed, layerWeight(layer, 'out_proj'), s.mix, T));
  }

  /** REFERENCE.md §3: fused q/gate|k|v projection -> norms + RoPE + cache write -> causal attention ⊙ gate -> o_proj. */
  /** Gated attention of scratch.xn into scratch.mix, its keys into `lc` (a model layer's, or the MTP layer's: src/model/mtp.ts). */
  attention(ops: Step[], layer: GpuLayer, lc: FullLayerCache, T: number, pos0: number, updates?: PositionUpdate[], input?: { x: GPUBuffer; prologue: GemvPrologue }) {
    const { ctx, w, scratch: s } = this, dims = this.attnDims();
    ops.push(...matmul(ctx, input?.x ?? s.xn, layerWeight(layer, 'qkv_proj'), s.proj, T, { prologue: input?.prologue }));
    ops.push(attnPrep(ctx, s.proj, layerVector(layer, 'q_norm'), layerVector(layer, 'k_norm'), w.invFreq, s.q, s.gate, lc.keys, lc.values, T, pos0, dims, updates));
    ops.push(...attention(ctx, s.q, lc.keys, lc.values, s.gate, s.core, T, pos0, dims, {}, updates));
    ops.push(...matmul(ctx, s.core, layerWeight(layer, 'o_proj'), s.mix, T));
  }

  /**
   * The token encoding of layer l up to its routed experts: the mixer reads the residual stream and its pending
   * delta through its projection's RMSNorm prologue; the router GEMV adds the mixer output, writes the stream for
   * the layer's MoE (ping-pong: scratch.resid[l % 2], never the buffer it reads) and norms it for the router.
   */
  private tokenLayerPre(st: StepOps, l: number): void {
    const { ctx, scratch: s, cache } = this, c = this.c, ops = st.ops;
    const layer = this.w.layers[l], lc = cache.layers[l], eps = c.rmsNormEps;
    const input: GemvPrologue = { kind: 'rmsnorm', weight: layerVector(layer, 'input_norm'), eps, deltas: st.resid.deltas };
    if (layer.type === 'linear_attention') {
      const gdn = lc as LinearLayerCache, P = 2 * c.keyDim + 2 * c.valueDim + 2 * c.linearNumValueHeads;
      const conv = { channels: c.convDim, K: c.convKernel, w: layerVector(layer, 'conv'), state: gdn.conv, y: s.conv };
      ops.push(...matmul(ctx, st.resid.h, layerWeight(layer, 'in_proj'), s.proj, 1, { prologue: input, conv }));
      ops.push(gdnStep(ctx, s.conv, s.proj, P, layerVector(layer, 'A_log'), layerVector(layer, 'dt_bias'), gdn.recurrent, s.core, 1, c));
      const gated: GemvPrologue = { kind: 'gated', weight: layerVector(layer, 'gated_norm'), eps, z: s.proj, zOffset: c.convDim, headDim: c.linearValueHeadDim };
      ops.push(...matmul(ctx, s.core, layerWeight(layer, 'out_proj'), s.mix, 1, { prologue: gated }));
    } else if (attentionDecodeFits(this.attnDims())) {
      const kv = lc as FullLayerCache;
      ops.push(...matmul(ctx, st.resid.h, layerWeight(layer, 'qkv_proj'), s.proj, 1, { prologue: input }));
      ops.push(...attentionDecode(ctx, s.proj, layerVector(layer, 'q_norm'), layerVector(layer, 'k_norm'), this.w.invFreq, kv.keys, kv.values, s.core, st.pos0, this.attnDims(), st.updates));
      ops.push(...matmul(ctx, s.core, layerWeight(layer, 'o_proj'), s.mix, 1));
    } else {
      this.attention(ops, layer, lc as FullLayerCache, 1, st.pos0, st.updates, { x: st.resid.h, prologue: input });
    }
    const h = s.resid[l % 2], post = layerVector(layer, 'post_norm');
    ops.push(...matmul(ctx, st.resid.h, layerWeight(layer, 'router'), s.routerLogits, 1, { prologue: { kind: 'rmsnorm', weight: post, eps, deltas: [...st.resid.deltas, s.mix], hOut: h } }));
    st.resid = { h, deltas: [] };
    if (st.streaming) this.routerTopK(st); // read back before the experts run; the MoE then reads it (MoeRoute.routed)
    if (this.sharedAsPair(st, l)) return;
    ops.push(...matmul(ctx, h, layerWeight(layer, 'shared_gate_up'), s.sharedMid, 1, { prologue: { kind: 'rmsnorm', weight: post, eps, deltas: [] } }));
    ops.push(...matmul(ctx, s.sharedMid, layerWeight(layer, 'shared_down'), s.shared, 1, { swiglu: true }));
  }

  /** Whether layer l's shared expert runs as one more pair in the routed experts' GEMVs (a decode-path step). */
  private sharedAsPair(st: StepOps, l: number): boolean {
    return this.w.layers[l].experts.sharedSlot !== undefined && takesDecodePath(st.T, st.opts.moe);
  }

  async readTap(name: string): Promise<Float32Array> {
    const t = this.taps.get(name);
    if (!t) throw new Error(`no tap "${name}" was recorded`);
    return this.ctx.readF32(t.buffer, t.bytes / 4);
  }
}
