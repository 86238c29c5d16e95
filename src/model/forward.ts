// The Qwen3-Next forward pass on the GPU as a flat op list per step (prefill chunk or decode token),
// encoded once and submitted once. Reading order follows execution order (REFERENCE.md §2-5):
//   embed -> for each layer: norm -> (Gated DeltaNet | gated attention) -> +residual -> norm -> MoE -> +residual
//   -> final norm -> lm_head. Each residual add and the norm after it are one dispatch (addRmsNorm). A decode
//   token fuses more: the GDN conv runs in in_proj's GEMV, the GDN prep in its recurrent step, the MoE down GEMVs
//   do the combine, and a shared expert with an expert's shape runs as one more expert pair (gpu-weights.ts
//   sharedExpertFits): 10 dispatches a GDN layer, 11 an attention layer at the 80B shape.
// Named taps copy any intermediate tensor out for tests (`L3.mixer_out`, `L0.gdn.core_out`, ...).
// The layer loop is written once, in walk(): it stops at each layer's routed experts and lets its caller encode
// them, so the resident steps (build, decodeOps) and the streaming step (src/cache/streaming-step.ts, which
// first reads the layer's routing back and makes its experts resident) share every other op.
import type { Qwen3NextConfig } from '../config.ts';
import { type GpuContext, type Step, type Binding } from '../gpu/context.ts';
import { addRmsNorm, rmsNorm, rmsNormGated } from '../kernels/norm.ts';
import { matmul } from '../kernels/matmul.ts';
import { embed } from '../kernels/embed.ts';
import { causalConv1d } from '../kernels/conv.ts';
import { gdnPrep, gdnChunked, gdnRecurrent, gdnStep } from '../kernels/gdn.ts';
import { attnPrep, attention, decodeSplitLen, type AttnDims, type PositionUpdate } from '../kernels/attention.ts';
import { router, moeDecode, moePrefill, moeExperts, createMoeScratch, takesDecodePath, type MoeScratch } from '../kernels/moe.ts';
import { gdnChunkedScratchBytes } from '../kernels/gdn.ts';
import type { GpuWeights, GpuLayer } from './gpu-weights.ts';
import type { GpuWeight } from '../gpu/packed-weight.ts';
import type { WeightFormat } from '../quant/formats.ts';
import type { Qwen3NextGpuDynamicCache, LinearLayerCache, FullLayerCache } from './dynamic-cache.ts';

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
}

const moeShape = (c: Qwen3NextConfig, format: WeightFormat) => ({ E: c.numExperts, k: c.numExpertsPerTok, H: c.hiddenSize, I: c.moeIntermediateSize, format });

/** Activation buffers for up to `maxT` tokens per step, reused by every layer. */
class Scratch {
  readonly ids: GPUBuffer; // (T) u32
  readonly h: GPUBuffer; // (T, H) residual stream
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

/** One step's op list under construction: build() runs it whole; a streaming step submits it layer by layer. */
export interface StepOps {
  T: number;
  opts: StepOptions;
  pos0: number; // cache position of the step's first token
  ops: Step[];
  want: Set<string>; // taps asked for
  updates?: PositionUpdate[]; // set when the list is built to be replayed at later positions (decode)
}

/** A one-token op list built once and replayed every decode step; `updates` move it to a new position. */
interface DecodeList {
  key: string;
  ops: Step[];
  updates: PositionUpdate[];
}

/** Buffers a streaming step needs besides the resident ones, made on first use. */
class StreamScratch {
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

export class ForwardBuilder {
  readonly scratch: Scratch;
  private stream?: StreamScratch;
  private readonly taps = new Map<string, { buffer: GPUBuffer; bytes: number }>();
  private decodeList?: DecodeList;

  constructor(readonly ctx: GpuContext, readonly w: GpuWeights, readonly cache: Qwen3NextGpuDynamicCache, maxTokensPerStep: number) {
    this.scratch = new Scratch(ctx, w.config, maxTokensPerStep, w.quant.experts);
  }

  get streamScratch(): StreamScratch {
    return (this.stream ??= new StreamScratch(this.ctx, this.w.config, this.scratch.maxT));
  }

  /**
   * The step's ops in execution order: the head, then per layer everything up to its routed experts, a yield of
   * the layer index (the caller encodes routedExperts(st, l), or streams them first), the rest of the layer, and
   * the tail. The one place the layer loop is written.
   */
  *walk(st: StepOps): Generator<number, void, void> {
    this.head(st);
    for (let l = 0; l < this.w.config.numLayers; l++) {
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
   * The op list of one resident decode token (no taps) at the cache's position: built on first use and then only
   * re-pointed at the new position (a few uniform writes), so a token costs no bind-group or buffer creation.
   * Rebuilt when the attention split length changes (every 8K keys at the real shape) or the options do.
   */
  decodeOps(opts: StepOptions): Step[] {
    if (opts.taps?.length) throw new Error('decodeOps: taps need a fresh build()');
    const c = this.w.config, pos0 = this.cache.position;
    const len = decodeSplitLen(pos0 + 1, { Hq: c.numAttentionHeads, Hkv: c.numKeyValueHeads, D: c.headDim, R: c.rotaryDim, maxT: this.cache.maxT, eps: c.rmsNormEps });
    const key = `${opts.logits}|${opts.gdn}|${opts.moe}|${len}`;
    if (this.decodeList?.key !== key) {
      const st = this.resident({ ...this.begin(1, opts), updates: [] });
      this.decodeList = { key, ops: st.ops, updates: st.updates! };
    }
    for (const u of this.decodeList.updates) u(pos0);
    return this.decodeList.ops;
  }

  /** Walk the step with every layer's routed experts resident. */
  private resident(st: StepOps): StepOps {
    for (const l of this.walk(st)) this.routedExperts(st, l);
    return st;
  }

  begin(T: number, opts: StepOptions): StepOps {
    if (T > this.scratch.maxT) throw new Error(`step of ${T} tokens exceeds the scratch size ${this.scratch.maxT}`);
    return { T, opts, pos0: this.cache.position, ops: [], want: new Set(opts.taps ?? []) };
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
    this.tap(st, 'embeddings', s.h, st.T * this.w.config.hiddenSize);
  }

  /**
   * Layer l up to the routed experts: norm -> mixer -> +residual & norm -> router top-k and the shared expert.
   * Every residual add is fused with the RMSNorm after it, so the input norm of layer l > 0 was already done by
   * layerPost(l - 1).
   */
  layerPre(st: StepOps, l: number): void {
    const { ctx, w, scratch: s, cache } = this;
    const c = w.config, H = c.hiddenSize, T = st.T, ops = st.ops, tap = this.tap.bind(this, st);
    const layer = w.layers[l], lc = cache.layers[l];
    if (l === 0) ops.push(rmsNorm(ctx, s.h, layerVector(layer, 'input_norm'), s.xn, T, H, c.rmsNormEps));
    tap(`L${l}.mixer_in`, s.xn, T * H);
    if (layer.type === 'linear_attention') this.gatedDeltaNet(ops, tap, l, layer, lc as LinearLayerCache, T, st.opts);
    else this.attention(ops, layer, lc as FullLayerCache, T, st.pos0, st.updates);
    tap(`L${l}.mixer_out`, s.mix, T * H);
    ops.push(addRmsNorm(ctx, s.mix, s.h, layerVector(layer, 'post_norm'), s.xn, T, H, c.rmsNormEps));
    tap(`L${l}.moe_in`, s.xn, T * H);
    this.routerAndShared(ops, tap, l, layer, st);
  }

  /** Prefetch guess: layer l's router top-k on the current MoE input (of layer l - 1) into streamScratch.predIdx. */
  predictRouter(st: StepOps, l: number): void {
    const { ctx, w, scratch: s } = this, c = w.config, p = this.streamScratch;
    st.ops.push(matmul(ctx, s.xn, layerWeight(w.layers[l], 'router'), p.predLogits, st.T));
    st.ops.push(router(ctx, p.predLogits, p.predIdx, p.predW, st.T, { E: c.numExperts, k: c.numExpertsPerTok, normTopk: c.normTopkProb }));
  }

  /**
   * Layer l's routed experts + combine into scratch.mix, for all tokens or for rows [range.start, range.end)
   * (a streaming sub-batch: rows copied to row 0 of streamScratch, the MoE run there, its output copied back).
   */
  routedExperts(st: StepOps, l: number, range?: { start: number; end: number }): void {
    const { ctx, w, scratch: s } = this, c = w.config, e = w.layers[l].experts;
    const sharedSlot = this.sharedAsPair(st, l) ? e.sharedSlot : undefined;
    const moe: typeof moeExperts = sharedSlot !== undefined ? (...a) => moeDecode(...a, { sharedSlot })
      : st.opts.moe === 'per-token' ? moeDecode : st.opts.moe === 'grouped' ? moePrefill : moeExperts;
    if (!range || (range.start === 0 && range.end === st.T)) {
      const b = { x: s.xn, logits: s.routerLogits, idx: s.topIdx, w: s.topW, slotOf: e.slotOf, gateUp: e.gateUp, down: e.down, shared: s.shared, out: s.mix };
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
    const b = { x: p.x, logits: p.logits, idx: p.idx, w: p.w, slotOf: e.slotOf, gateUp: e.gateUp, down: e.down, shared: p.shared, out: p.out };
    st.ops.push(...moe(ctx, b, n, moeShape(c, e.format), s.moe));
    st.ops.push({ label: 'sub-batch out', copy: { src: p.out, srcOffset: 0, dst: s.mix, dstOffset: a * H * 4, size: n * H * 4 } });
  }

  /** +residual fused with the next norm: the next layer's input norm, or the final norm after the last layer. */
  layerPost(st: StepOps, l: number): void {
    const { ctx, w, scratch: s } = this, c = w.config, H = c.hiddenSize;
    this.tap(st, `L${l}.moe_out`, s.mix, st.T * H);
    const norm = l + 1 < c.numLayers ? layerVector(w.layers[l + 1], 'input_norm') : w.norm.buffer;
    st.ops.push(addRmsNorm(ctx, s.mix, s.h, norm, s.xn, st.T, H, c.rmsNormEps));
    this.tap(st, `L${l}.out`, s.h, st.T * H);
  }

  /** lm_head on the final-normed rows (layerPost of the last layer normed them): every row for 'all', the last for generation. */
  tail(st: StepOps): void {
    const { ctx, w, scratch: s } = this, H = w.config.hiddenSize, T = st.T, ops = st.ops;
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
    ops.push(matmul(ctx, rows, w.lmHead, st.opts.logits === 'all' ? s.allLogits(ctx, w.config.vocabSize) : s.logits, n));
  }

  /** REFERENCE.md §2: fused projection -> conv+SiLU -> gates/L2 -> delta rule -> gated norm -> out_proj. */
  private gatedDeltaNet(ops: Step[], tap: (n: string, b: GPUBuffer, e: number) => void, l: number, layer: GpuLayer, lc: LinearLayerCache, T: number, opts: StepOptions) {
    const { ctx, w, scratch: s } = this;
    const c = w.config;
    const P = 2 * c.keyDim + 2 * c.valueDim + 2 * c.linearNumValueHeads;
    const recurrent = (opts.gdn ?? (T === 1 ? 'recurrent' : 'chunked')) === 'recurrent';
    const tapGates = opts.taps?.some((n) => n === `L${l}.gdn.g` || n === `L${l}.gdn.beta`);
    if (T === 1 && recurrent && !tapGates) { // decode: the conv runs in in_proj's GEMV, the prep in the step
      const conv = { channels: c.convDim, K: c.convKernel, w: layerVector(layer, 'conv'), state: lc.conv, y: s.conv };
      ops.push(matmul(ctx, s.xn, layerWeight(layer, 'in_proj'), s.proj, T, { conv }));
    } else {
      ops.push(matmul(ctx, s.xn, layerWeight(layer, 'in_proj'), s.proj, T));
      ops.push(causalConv1d(ctx, s.proj, P, layerVector(layer, 'conv'), lc.conv, s.conv, T, c.convDim, c.convKernel));
    }
    if (recurrent && !tapGates) {
      ops.push(gdnStep(ctx, s.conv, s.proj, P, layerVector(layer, 'A_log'), layerVector(layer, 'dt_bias'), lc.recurrent, s.core, T, c)); // prep fused in
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
    ops.push(matmul(ctx, s.normed, layerWeight(layer, 'out_proj'), s.mix, T));
  }

  /** REFERENCE.md §3: fused q/gate|k|v projection -> norms + RoPE + cache write -> causal attention ⊙ gate -> o_proj. */
  private attention(ops: Step[], layer: GpuLayer, lc: FullLayerCache, T: number, pos0: number, updates?: PositionUpdate[]) {
    const { ctx, w, scratch: s } = this;
    const c = w.config;
    const dims: AttnDims = { Hq: c.numAttentionHeads, Hkv: c.numKeyValueHeads, D: c.headDim, R: c.rotaryDim, maxT: this.cache.maxT, eps: c.rmsNormEps };
    ops.push(matmul(ctx, s.xn, layerWeight(layer, 'qkv_proj'), s.proj, T));
    ops.push(attnPrep(ctx, s.proj, layerVector(layer, 'q_norm'), layerVector(layer, 'k_norm'), w.invFreq, s.q, s.gate, lc.keys, lc.values, T, pos0, dims, updates));
    ops.push(...attention(ctx, s.q, lc.keys, lc.values, s.gate, s.core, T, pos0, dims, {}, updates));
    ops.push(matmul(ctx, s.core, layerWeight(layer, 'o_proj'), s.mix, T));
  }

  /** Whether layer l's shared expert runs as one more pair in the routed experts' GEMVs (a decode-path step). */
  private sharedAsPair(st: StepOps, l: number): boolean {
    return this.w.layers[l].experts.sharedSlot !== undefined && takesDecodePath(st.T, st.opts.moe);
  }

  /** REFERENCE.md §5: router (+ shared gate logit) -> top-k, and the shared expert (routedExperts does the rest). */
  private routerAndShared(ops: Step[], tap: (n: string, b: GPUBuffer, e: number) => void, l: number, layer: GpuLayer, st: StepOps) {
    const T = st.T;
    const { ctx, w, scratch: s } = this;
    const c = w.config;
    ops.push(matmul(ctx, s.xn, layerWeight(layer, 'router'), s.routerLogits, T));
    ops.push(router(ctx, s.routerLogits, s.topIdx, s.topW, T, { E: c.numExperts, k: c.numExpertsPerTok, normTopk: c.normTopkProb }));
    tap(`L${l}.router_logits`, s.routerLogits, T * (c.numExperts + 1));
    tap(`L${l}.router_idx`, s.topIdx, T * c.numExpertsPerTok);
    tap(`L${l}.router_w`, s.topW, T * c.numExpertsPerTok);
    if (this.sharedAsPair(st, l)) return; // routedExperts runs it with the routed ones
    ops.push(matmul(ctx, s.xn, layerWeight(layer, 'shared_gate_up'), s.sharedMid, T));
    ops.push(matmul(ctx, s.sharedMid, layerWeight(layer, 'shared_down'), s.shared, T, { swiglu: true }));
  }

  async readTap(name: string): Promise<Float32Array> {
    const t = this.taps.get(name);
    if (!t) throw new Error(`no tap "${name}" was recorded`);
    return this.ctx.readF32(t.buffer, t.bytes / 4);
  }
}
