// The multi-token-prediction layer on the GPU, as src/reference/mtp.ts (vLLM's Qwen3NextMultiTokenPredictor):
//   e = pre_fc_norm_embedding(embed(next_id)), g = pre_fc_norm_hidden(hidden), x = fc([e | g]),
//   x = the MTP decoder layer (full attention with its own K/V cache, and its MoE), logits = lm_head(norm(x)).
// Many-token encoding only (the model's prefill ops, scratch shared with it: an MTP call runs between model
// steps); the two normed rows reach fc's input side by side through buffer copies. The layer keeps no position:
// its caller (src/model/speculative.ts) says where each call's rows sit, as the main model's rows do.
import { bufferId, type GpuContext, type Step } from '../gpu/context.ts';
import { embed } from '../kernels/embed.ts';
import { matmul } from '../kernels/matmul.ts';
import { moeExperts, router } from '../kernels/moe.ts';
import { addRmsNorm, rmsNorm } from '../kernels/norm.ts';
import { kvElementBytes, replaySplitLen, type PositionUpdate } from '../kernels/attention.ts';
import type { FullLayerCache } from './dynamic-cache.ts';
import type { ForwardBuilder } from './forward.ts';
import type { GpuMtpWeights } from './gpu-weights.ts';
import { moeShape } from './scratch.ts';

const REPLAY_ROWS = 4; // calls of at most this many rows (a speculative round's) keep their op lists

export interface MtpOutputs {
  /** The last row's logits (V) go here (a draft's); none: the call only fills the MTP cache (rows of a prompt). */
  lastLogits?: GPUBuffer;
  /** The last row's final normed hidden state (H) goes here: the hidden input of a chained draft row. */
  lastHidden?: GPUBuffer;
}

export class Qwen3NextGpuMultiTokenPredictor {
  readonly cache: FullLayerCache;
  private readonly hidden: GPUBuffer; // (maxT, H) forward()'s hidden rows, uploaded
  private readonly cat: GPUBuffer; // (maxT, 2H) [e | g] rows, fc's input
  private readonly lists = new Map<string, { len: number; ops: Step[]; updates: PositionUpdate[] }>(); // by rows and buffers

  constructor(private readonly ctx: GpuContext, private readonly fb: ForwardBuilder, private readonly w: GpuMtpWeights) {
    const c = fb.w.config, maxT = fb.cache.maxT, T = fb.scratch.maxT;
    const kvBytes = c.numKeyValueHeads * maxT * c.headDim * kvElementBytes(fb.cache.halfKv);
    this.cache = { type: 'full_attention', keys: ctx.buffer(kvBytes, 'mtp.k_cache'), values: ctx.buffer(kvBytes, 'mtp.v_cache') };
    this.hidden = ctx.buffer(T * c.hiddenSize * 4, 'mtp.hidden');
    this.cat = ctx.buffer(T * 2 * c.hiddenSize * 4, 'mtp.cat');
  }

  /**
   * The ops of T rows at positions pos0.. of the MTP cache: row t from the main model's final normed hidden state
   * hidden[t] (T, H) and the token that followed it, already in scratch.ids (T u32). They run between model steps
   * and share the model's scratch.
   */
  encode(T: number, pos0: number, hidden: GPUBuffer, out: MtpOutputs = {}): Step[] {
    const fb = this.fb;
    if (T < 1 || T > fb.scratch.maxT) throw new RangeError(`MTP: ${T} rows (at most ${fb.scratch.maxT} a call)`);
    if (pos0 + T > fb.cache.maxT) throw new RangeError(`MTP: rows ${pos0}..${pos0 + T - 1} exceed the context of ${fb.cache.maxT}`);
    if (T > REPLAY_ROWS) return this.build(T, pos0, hidden, out);
    // a round's few rows: the list is kept and re-pointed at the new position, as the model's decode and verify lists
    const key = [T, hidden, out.lastLogits, out.lastHidden].map((b) => (typeof b === 'number' ? b : b ? bufferId(b) : 0)).join('|');
    const len = replaySplitLen(T, pos0, fb.attnDims());
    let list = this.lists.get(key);
    if (list?.len !== len) {
      const updates: PositionUpdate[] = [];
      this.lists.set(key, (list = { len, ops: this.build(T, pos0, hidden, out, updates), updates }));
    }
    for (const u of list.updates) u(pos0);
    return list.ops;
  }

  private build(T: number, pos0: number, hidden: GPUBuffer, out: MtpOutputs, updates?: PositionUpdate[]): Step[] {
    const { ctx, fb, w } = this, c = fb.w.config, s = fb.scratch, H = c.hiddenSize, eps = c.rmsNormEps;
    const layer = w.layer, e = layer.experts, get = (n: string) => layer.weights.get(n)!;
    const ops: Step[] = [
      embed(ctx, s.ids, fb.w.embed, s.h, T),
      rmsNorm(ctx, s.h, w.preFcNormEmbedding, s.xn, T, H, eps),
      rmsNorm(ctx, hidden, w.preFcNormHidden, s.mix, T, H, eps),
    ];
    for (let t = 0; t < T; t++) {
      ops.push({ label: 'mtp [e | g]', copy: { src: s.xn, srcOffset: t * H * 4, dst: this.cat, dstOffset: t * 2 * H * 4, size: H * 4 } });
      ops.push({ label: 'mtp [e | g]', copy: { src: s.mix, srcOffset: t * H * 4, dst: this.cat, dstOffset: (t * 2 + 1) * H * 4, size: H * 4 } });
    }
    ops.push(...matmul(ctx, this.cat, w.fc, s.h, T), rmsNorm(ctx, s.h, get('input_norm').buffer, s.xn, T, H, eps));
    fb.attention(ops, layer, this.cache, T, pos0, updates);
    ops.push(
      addRmsNorm(ctx, s.mix, s.h, get('post_norm').buffer, s.xn, T, H, eps),
      ...matmul(ctx, s.xn, get('router'), s.routerLogits, T),
      router(ctx, s.routerLogits, s.topIdx, s.topW, T, { E: c.numExperts, k: c.numExpertsPerTok, normTopk: c.normTopkProb }),
      ...matmul(ctx, s.xn, get('shared_gate_up'), s.sharedMid, T),
      ...matmul(ctx, s.sharedMid, get('shared_down'), s.shared, T, { swiglu: true }),
      ...moeExperts(ctx, { slotOf: e.slotOf, gateUp: e.gateUp, down: e.down, x: s.xn, logits: s.routerLogits, idx: s.topIdx, w: s.topW, shared: s.shared, out: s.mix }, T, moeShape(c, e.format), s.moe),
    );
    if (!out.lastLogits && !out.lastHidden) return ops;
    ops.push(addRmsNorm(ctx, s.mix, s.h, w.norm, s.xn, T, H, eps));
    const last = { src: s.xn, srcOffset: (T - 1) * H * 4, dstOffset: 0, size: H * 4 };
    if (out.lastHidden) ops.push({ label: 'mtp last hidden', copy: { ...last, dst: out.lastHidden } });
    if (out.lastLogits) ops.push(...matmul(ctx, { buffer: s.xn, offset: (T - 1) * H * 4, size: H * 4 }, fb.w.lmHead, out.lastLogits, 1));
    return ops;
  }

  /**
   * Logits (T, V) of T rows at positions pos0..: hidden (T, H) the main model's final normed hidden states, nextIds[t]
   * the token that followed hidden[t] (tests; speculative decoding uses encode()).
   */
  async forward(nextIds: ArrayLike<number>, hidden: Float32Array, pos0: number): Promise<Float32Array> {
    const { ctx, fb } = this, c = fb.w.config, s = fb.scratch, H = c.hiddenSize, V = c.vocabSize, T = nextIds.length;
    if (hidden.length !== T * H) throw new RangeError(`MTP forward: ${T} ids and ${hidden.length} hidden values (H ${H})`);
    const q = ctx.device.queue;
    q.writeBuffer(s.ids, 0, Uint32Array.from(nextIds));
    q.writeBuffer(this.hidden, 0, hidden as Float32Array<ArrayBuffer>);
    const ops = [...this.encode(T, pos0, this.hidden)];
    ops.push(addRmsNorm(ctx, s.mix, s.h, this.w.norm, s.xn, T, H, c.rmsNormEps), ...matmul(ctx, s.xn, fb.w.lmHead, s.allLogits(ctx, V), T));
    ctx.run(ops);
    return ctx.readF32(s.allLogits(ctx, V), T * V);
  }
}
