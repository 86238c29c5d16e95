// Speculative decoding with Qwen3-Next's own multi-token-prediction layer (vLLM's qwen3_next_mtp proposer). A round
// from position P, with x the chosen token not yet fed:
//   1. draft: the MTP layer (src/model/mtp.ts) runs the rows waiting for it (the main model's final normed hidden
//      state at each position it consumed since, with the token that followed: the last one's is x) and drafts d1
//      from its last row; d2..dk chain on the MTP layer's own last hidden state (k = draftTokens);
//   2. verify: the model runs [x, d1..dk] in one step (the many-token encoding, GDN recurrent, each linear layer's
//      state after every token kept: cache.stepStates) and its sampler chooses g_t after each of the k + 1 tokens,
//      with the draws a plain decode would give those positions;
//   3. accept: a = the longest prefix with d_{t+1} == g_t; the round yields g_0..g_a (a + 1 tokens for one step);
//   4. roll back: cache.rollback keeps x, d1..da: K/V rows past the position are overwritten before they are read,
//      the linear layers' states come back from the step's own snapshots.
// 1-3 are one submit and the round reads back 2(k + 1) ids: the only round trip. The drafts are greedy (q one-hot),
// so accepting d while the model's own draw equals it is the speculative-sampling rule itself (accept with p(d); on
// rejection draw from p without d): greedy or sampled, the reply is token for token the one plain decoding gives.
// A repetition penalty needs the drafts on the CPU before the verify; such requests decode plainly (the engine).
import { Usage, type GpuContext, type Step } from '../gpu/context.ts';
import { Sampler, type SampleParams } from '../kernels/sample.ts';
import { decodeTokens, type TokenStreamOptions } from './decode.ts';
import type { ForwardHooks, Qwen3NextGpuModel } from './model.ts';
import type { Qwen3NextGpuMultiTokenPredictor } from './mtp.ts';

export interface SpeculativeOptions {
  /** Tokens the MTP layer drafts a round, 1..3 (vLLM's num_speculative_tokens; 1-3 recommended). */
  draftTokens: number;
  /**
   * Below this share of drafts accepted over the last 16 rounds, a reply goes on without speculation (a verify
   * step costs more than a token; see BENCHMARKS.md). Default 0.25; 0 never switches off.
   */
  minAcceptance?: number;
  /**
   * Benchmarks and tests only: the drafts of the round at `position` from this function instead of the MTP layer
   * (an oracle that knows the reply, or random ids: the bounds of what speculation can gain and lose).
   */
  drafts?: (position: number, k: number) => number[];
  /**
   * Submits a round is split into (default 4): the CPU waits for each round, so the GPU should start on it while the
   * CPU still encodes the rest (benchmarks compare).
   */
  submits?: number;
}

/** Counts since the decoder was made (the engine reports a request's difference). */
export interface SpeculativeStats {
  rounds: number;
  drafted: number;
  accepted: number;
  /** Tokens chosen without speculation after it switched off for a reply. */
  plain: number;
}

const WINDOW = 16; // rounds the switch-off rule looks at
const GREEDY: SampleParams = { temperature: 0, topK: 0, topP: 1, random: 0 };
const SLOT = 256; // bytes between u32 picks: a storage binding's offset alignment

/**
 * MTP rows not yet run: hidden rows 0..rows-1 at positions pos0.., row t followed by next[t] (the last one by the
 * next fed token), in the cache state of that generation.
 */
interface Waiting { hidden: GPUBuffer; pos0: number; rows: number; next: number[]; generation: number }

export class Qwen3NextSpeculativeDecoder {
  readonly stats: SpeculativeStats = { rounds: 0, drafted: 0, accepted: 0, plain: 0 };
  private readonly k: number;
  private readonly mtp: Qwen3NextGpuMultiTokenPredictor;
  private readonly ids: GPUBuffer; // (k + 1) u32: the verify step's tokens [x, d1..dk]
  private readonly mtpIds: GPUBuffer; // (maxT + k + 1) u32: the MTP rows' following tokens
  private readonly picks: GPUBuffer; // (2k + 1) slots of SLOT bytes: g_0..g_k, then d1..dk
  private readonly readback: GPUBuffer; // (2k + 1) u32 MAP_READ
  private readonly verifyLogits: GPUBuffer; // (k + 1, V)
  private readonly rowLogits: GPUBuffer; // (k + 1) rows of V at a SLOT-aligned stride (a sampler binds one)
  private readonly verifyHidden: GPUBuffer; // (k + 1, H) the verify step's final normed rows
  private readonly promptHidden: GPUBuffer; // (maxT, H) a prompt step's final normed rows
  private readonly lastHidden: GPUBuffer; // (1, H) a prompt's last row, waiting for its next token
  private readonly chainHidden: GPUBuffer; // (1, H) the MTP layer's last hidden state (chained drafts)
  private readonly draftLogits: GPUBuffer; // (V) the MTP layer's last row
  private readonly rowSamplers: Sampler[];
  private readonly draftSamplers: Sampler[];
  private waiting?: Waiting;
  private recent: { drafted: number; accepted: number }[] = [];

  constructor(private readonly model: Qwen3NextGpuModel, readonly opts: SpeculativeOptions) {
    if (!model.mtp) throw new Error('speculative decoding needs the MTP layer: load the model with `mtp: true` from a source that has mtp.* tensors');
    if (!(Number.isInteger(opts.draftTokens) && opts.draftTokens >= 1 && opts.draftTokens <= 3)) throw new RangeError(`draftTokens ${opts.draftTokens}: 1, 2 or 3`);
    const ctx = model.ctx, c = model.config, k = (this.k = opts.draftTokens), V = c.vocabSize, H = c.hiddenSize, maxT = model.maxTokensPerStep;
    this.mtp = model.mtp;
    const stride = Math.ceil((V * 4) / SLOT) * SLOT;
    this.ids = ctx.buffer((k + 1) * 4, 'spec.ids');
    this.mtpIds = ctx.buffer((maxT + k + 1) * 4, 'spec.mtp_ids');
    this.picks = ctx.buffer((2 * k + 1) * SLOT, 'spec.picks');
    this.readback = ctx.device.createBuffer({ size: (2 * k + 1) * 4, usage: Usage.MAP_READ | Usage.COPY_DST, label: 'spec.readback' });
    this.verifyLogits = ctx.buffer((k + 1) * V * 4, 'spec.verify_logits');
    this.rowLogits = ctx.buffer((k + 1) * stride, 'spec.row_logits');
    this.verifyHidden = ctx.buffer((k + 1) * H * 4, 'spec.verify_hidden');
    this.promptHidden = ctx.buffer(maxT * H * 4, 'spec.prompt_hidden');
    this.lastHidden = ctx.buffer(H * 4, 'spec.last_hidden');
    this.chainHidden = ctx.buffer(H * 4, 'spec.chain_hidden');
    this.draftLogits = ctx.buffer(V * 4, 'spec.draft_logits');
    const pick = (i: number) => ({ buffer: this.picks, offset: i * SLOT, size: 4 });
    this.rowSamplers = Array.from({ length: k + 1 }, (_, t) => new Sampler(ctx, { buffer: this.rowLogits, offset: t * stride, size: V * 4 }, pick(t), V));
    this.draftSamplers = Array.from({ length: k }, (_, j) => new Sampler(ctx, this.draftLogits, pick(k + 1 + j), V));
    model.cache.stepStates(k); // before any verify list binds them
  }

  private get ctx(): GpuContext {
    return this.model.ctx;
  }

  /**
   * Run prompt tokens from the cache's position (as model.forward) with the MTP layer following: each step's rows
   * go through it with the tokens that followed them, but the last, which waits for the token after the prompt.
   */
  async prefill(ids: number[], progress?: ForwardHooks['progress']): Promise<void> {
    const m = this.model, H = m.config.hiddenSize, s = m.forwardBuilder.scratch, bytes = (n: number) => n * H * 4;
    let pending = this.waitingAt(m.cache.position);
    this.waiting = undefined; // a failed step leaves nothing waiting
    const after = (start: number, T: number): Step[] => {
      const ops: Step[] = [{ label: 'spec prompt hidden', copy: { src: s.xn, srcOffset: 0, dst: this.promptHidden, dstOffset: 0, size: bytes(T) } }];
      const rows: number[] = [];
      if (pending) {
        rows.push(...pending.next, ids[start]);
        ops.push(...this.mtpRows(0, pending.rows, pending.pos0, pending.hidden));
      }
      if (T > 1) ops.push(...this.mtpRows(rows.length, T - 1, m.cache.position, this.promptHidden));
      rows.push(...ids.slice(start + 1, start + T));
      ops.push({ label: 'spec prompt last row', copy: { src: this.promptHidden, srcOffset: bytes(T - 1), dst: this.lastHidden, dstOffset: 0, size: bytes(1) } });
      this.ctx.device.queue.writeBuffer(this.mtpIds, 0, Uint32Array.from(rows));
      pending = { hidden: this.lastHidden, pos0: m.cache.position + T - 1, rows: 1, next: [], generation: m.cache.generation };
      return ops;
    };
    await m.forward(ids, {}, { after, progress });
    this.waiting = pending;
  }

  /** Ops of `rows` MTP rows at pos0 whose following tokens sit at mtpIds[from..]: no logits, only its cache. */
  private mtpRows(from: number, rows: number, pos0: number, hidden: GPUBuffer): Step[] {
    const copy: Step = { label: 'spec mtp ids', copy: { src: this.mtpIds, srcOffset: from * 4, dst: this.model.forwardBuilder.scratch.ids, dstOffset: 0, size: rows * 4 } };
    return [copy, ...this.mtp.encode(rows, pos0, hidden)];
  }

  /** The waiting rows when they end right before `position` of the same state (else it moved on without them). */
  private waitingAt(position: number): Waiting | undefined {
    const w = this.waiting;
    return w && w.pos0 + w.rows === position && w.generation === this.model.cache.generation ? w : undefined;
  }

  /**
   * As decodeTokens (src/model/decode.ts): feed `first`, yield up to maxTokens chosen tokens, in rounds of one
   * verify step. When the consumer stops inside a round, the state keeps the tokens fed up to the one it took last.
   */
  async *tokens(first: number, o: TokenStreamOptions): AsyncGenerator<number> {
    const draws: SampleParams[] = []; // draws for the next positions, taken in order as plain decoding takes them
    const draw = (j: number) => {
      while (draws.length <= j) draws.push(o.sampling());
      return draws[j];
    };
    if ((draw(0).repetitionPenalty ?? 1) !== 1) throw new Error('speculative decoding: a repetition penalty needs plain decoding');
    let x = first, produced = 0;
    this.recent = [];
    while (produced < o.maxTokens) {
      if (this.switchedOff()) {
        const plain = decodeTokens(this.model, x, { ...o, sampling: () => draws.shift() ?? o.sampling(), maxTokens: o.maxTokens - produced });
        for await (const id of plain) {
          this.stats.plain++;
          yield id;
        }
        return;
      }
      const out = await this.round(x, draw, o.maxTokens - produced);
      draws.splice(0, out.length);
      let taken = 0;
      try {
        for (const id of out) {
          o.fed?.(taken === 0 ? x : out[taken - 1]);
          o.history.push(id);
          taken++;
          produced++;
          yield id;
        }
      } finally {
        if (taken < out.length) this.keep(out.length, taken); // the consumer stopped inside the round
      }
      x = out[out.length - 1];
    }
  }

  /** After a round that fed `fed` tokens, keep only the first `keep` (the state, and the rows waiting for the MTP). */
  private keep(fed: number, keep: number): void {
    this.model.cache.rollback(fed, keep);
    if (this.waiting) this.waiting = { ...this.waiting, rows: keep, next: this.waiting.next.slice(0, keep - 1) };
  }

  private switchedOff(): boolean {
    const min = this.opts.minAcceptance ?? 0.25;
    if (this.recent.length < WINDOW || min <= 0) return false;
    const sum = this.recent.reduce((a, r) => ({ drafted: a.drafted + r.drafted, accepted: a.accepted + r.accepted }), { drafted: 0, accepted: 0 });
    return sum.drafted > 0 && sum.accepted / sum.drafted < min;
  }

  /** One round from the cache's position feeding x: returns the chosen tokens g_0..g_a (the state keeps x, g_0..g_{a-1}). */
  private async round(x: number, draw: (j: number) => SampleParams, remaining: number): Promise<number[]> {
    const m = this.model, ctx = this.ctx, q = ctx.device.queue, s = m.forwardBuilder.scratch;
    const c = m.config, H = c.hiddenSize, V = c.vocabSize, P = m.cache.position;
    m.assertContext(1);
    const w = this.waitingAt(P);
    const k = w ? Math.max(0, Math.min(this.k, m.cache.maxT - P - 1, remaining - 1)) : 0, T = k + 1;
    const before: Step[] = [];
    const u32 = (src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, n = 1): Step => ({ label: 'spec ids', copy: { src, srcOffset, dst, dstOffset, size: n * 4 } });
    q.writeBuffer(this.ids, 0, Uint32Array.of(x));
    if (w && k > 0 && this.opts.drafts) {
      q.writeBuffer(this.ids, 4, Uint32Array.from(this.opts.drafts(P, k)));
    } else if (w && k > 0) {
      q.writeBuffer(this.mtpIds, 0, Uint32Array.from([...w.next, x]));
      before.push(u32(this.mtpIds, 0, s.ids, 0, w.rows));
      before.push(...this.mtp.encode(w.rows, w.pos0, w.hidden, { lastLogits: this.draftLogits, lastHidden: k > 1 ? this.chainHidden : undefined }));
      for (let j = 1; j <= k; j++) {
        if (j > 1) {
          before.push(u32(this.ids, (j - 1) * 4, s.ids, 0));
          before.push(...this.mtp.encode(1, P + j - 2, this.chainHidden, { lastLogits: this.draftLogits, lastHidden: j < k ? this.chainHidden : undefined }));
        }
        before.push(...this.draftSamplers[j - 1].ops(GREEDY), u32(this.picks, (this.k + j) * SLOT, this.ids, j * 4));
      }
    }
    before.push(u32(this.ids, 0, s.ids, 0, T));
    const stride = this.rowLogits.size / (this.k + 1);
    const after: Step[] = [{ label: 'spec verify hidden', copy: { src: s.xn, srcOffset: 0, dst: this.verifyHidden, dstOffset: 0, size: T * H * 4 } }];
    for (let t = 0; t < T; t++) {
      after.push({ label: 'spec row logits', copy: { src: this.verifyLogits, srcOffset: t * V * 4, dst: this.rowLogits, dstOffset: t * stride, size: V * 4 } });
      after.push(...this.rowSamplers[t].ops(draw(t)), u32(this.picks, t * SLOT, this.readback, t * 4));
    }
    if (k > 0) after.push(u32(this.ids, 4, this.readback, T * 4, k));
    this.waiting = undefined; // a failed step leaves nothing waiting
    await m.steps.run(T, { logits: 'all', stepStates: true, logitsInto: this.verifyLogits, submits: this.opts.submits ?? 4 }, after, before);
    m.cache.position += T;
    await this.readback.mapAsync(1 /* GPUMapMode.READ */, 0, (T + k) * 4);
    const got = new Uint32Array(this.readback.getMappedRange(0, (T + k) * 4).slice(0));
    this.readback.unmap();
    const g = Array.from(got.subarray(0, T)), d = Array.from(got.subarray(T));
    let a = 0;
    while (a < k && d[a] === g[a]) a++;
    m.cache.rollback(T, a + 1);
    this.waiting = { hidden: this.verifyHidden, pos0: P, rows: a + 1, next: g.slice(0, a), generation: m.cache.generation };
    this.stats.rounds++;
    this.stats.drafted += k;
    this.stats.accepted += a;
    if (k > 0) this.recent = [...this.recent.slice(1 - WINDOW), { drafted: k, accepted: a }];
    return g.slice(0, a + 1);
  }
}
