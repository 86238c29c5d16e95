// Next-token choice on the GPU (shaders/sample.wgsl): argmax, and sampling with HF's logits processors
// (repetition penalty, temperature, top-k, top-p), without reading the logits back.
import { type GpuContext, type Op, type Binding } from '../gpu/context.ts';
import { grid } from './grid.ts';

export interface SampleParams {
  temperature: number; // <= 0: greedy (argmax)
  topK: number; // 0 (or >= V): off
  topP: number; // >= 1: off
  random: number; // uniform [0, 1) from the caller's seeded PRNG
  repetitionPenalty?: number; // HF repetition_penalty; 1 or absent: off
  previous?: { ids: Binding; count: number }; // (count) u32 ids the penalty applies to (prompt + generated)
}

const BLOCK = 1024; // elements per workgroup of the block passes
const MAX_BLOCKS = 512;
const STATE_BYTES = (9 + 3 * 256 + 2 * MAX_BLOCKS) * 4; // State in sample.wgsl, before the penalised bit set
const RADIX_SHIFTS = [24, 16, 8, 0];

interface Scratch {
  s: GPUBuffer; // (V) f32 processed logits
  state: GPUBuffer;
}

// One scratch per (context, V): sampling ops of one context run in order, so they can share it.
const scratches = new WeakMap<GpuContext, Map<number, Scratch>>();

/** The vocabulary sizes the sampler supports. */
export function checkVocab(V: number) {
  if (V < 1 || V > MAX_BLOCKS * BLOCK) throw new RangeError(`sample: V=${V} outside 1..${MAX_BLOCKS * BLOCK}`);
}

function scratch(ctx: GpuContext, V: number): Scratch {
  checkVocab(V);
  let perV = scratches.get(ctx);
  if (!perV) scratches.set(ctx, (perV = new Map()));
  let sc = perV.get(V);
  if (!sc) {
    sc = { s: ctx.buffer(V * 4, 'sample.s'), state: ctx.buffer(STATE_BYTES + Math.ceil(V / 32) * 4, 'sample.state') };
    perV.set(V, sc);
  }
  return sc;
}

/** The Params struct of sample.wgsl. */
function paramsWords(V: number, topK: number, nPrev: number, temperature: number, topP: number, random: number, penalty: number): Uint32Array<ArrayBuffer> {
  const words = new Uint32Array(8);
  const f = new Float32Array(words.buffer);
  words.set([V, Math.ceil(V / BLOCK), topK, nPrev]);
  f.set([temperature, topP, random, penalty], 4);
  return words;
}

const argmaxOps = (ctx: GpuContext, params: GPUBuffer, state: GPUBuffer, values: Binding, out: Binding, V: number): Op[] => [
  ctx.op(`argmax_blocks(${V})`, 'sample.wgsl', 'argmax_blocks', {}, [params, state, values], [Math.ceil(V / BLOCK)]),
  ctx.op('argmax_final', 'sample.wgsl', 'argmax_final', {}, [params, state, values, out], [1]),
];

/** out[0] (u32) = argmax of logits (V) f32; ties go to the lowest index as in torch.argmax. */
export function argmax(ctx: GpuContext, logits: Binding, out: Binding, V: number): Op[] {
  return argmaxOps(ctx, ctx.uniform(paramsWords(V, 0, 0, 1, 1, 0, 1), 'sample.params'), scratch(ctx, V).state, logits, out, V);
}

/**
 * out[0] (u32) = a token drawn from logits (V) f32 as HF's generate does with do_sample: repetition penalty,
 * temperature, top-k, top-p, then a draw with `random`. The draw takes the first kept id (in id order) whose
 * cumulative probability exceeds `random`. Ties at a top-k/top-p threshold are all kept. temperature <= 0 is
 * greedy (penalty, then argmax).
 */
export function sample(ctx: GpuContext, logits: Binding, out: Binding, V: number, params: SampleParams): Op[] {
  return new Sampler(ctx, logits, out, V).ops(params);
}

/**
 * A sampler bound to its logits and output, for a decode loop: the op list of each kind of request (greedy or not,
 * penalty, top-k, top-p) is built once, and a token only rewrites its uniform (the draw, the penalty's id count).
 */
export class Sampler {
  private readonly built = new Map<string, { ops: Op[]; params: GPUBuffer; mark?: Op; ids?: Binding }>();

  constructor(private readonly ctx: GpuContext, private readonly logits: Binding, private readonly out: Binding, private readonly V: number) {}

  ops(params: SampleParams): Op[] {
    const { ctx, V } = this, { topK, topP, random } = params;
    const greedy = !(params.temperature > 0);
    const penalty = params.repetitionPenalty ?? 1;
    const nPrev = penalty !== 1 && params.previous ? params.previous.count : 0;
    const kinds = { greedy, prev: nPrev > 0, topK: !greedy && topK > 0 && topK < V, topP: !greedy && topP < 1 };
    const ids = nPrev > 0 ? params.previous!.ids : undefined, key = JSON.stringify(kinds);
    let b = this.built.get(key);
    if (!b || b.ids !== ids) { // first of its kind, or the penalty's id list moved to a bigger buffer
      const u = ctx.mutableUniform(new Uint32Array(8), 'sample.params'); // written before each use
      b = { ...this.build(u, kinds, ids), params: u, ids };
      this.built.set(key, b);
    }
    if (b.mark) b.mark.workgroups = grid(Math.ceil(nPrev / 256));
    ctx.device.queue.writeBuffer(b.params, 0, paramsWords(V, topK, nPrev, greedy ? 1 : params.temperature, topP, random, penalty));
    return b.ops;
  }

  private build(u: GPUBuffer, k: { greedy: boolean; prev: boolean; topK: boolean; topP: boolean }, ids?: Binding): { ops: Op[]; mark?: Op } {
    const { ctx, V } = this;
    const { s, state } = scratch(ctx, V);
    if (k.greedy && !k.prev) return { ops: argmaxOps(ctx, u, state, this.logits, this.out, V) };
    const ops: Op[] = [ctx.op('sample.reset', 'sample.wgsl', 'reset', {}, [u, state], [1])];
    const mark = k.prev ? ctx.op('sample.mark', 'sample.wgsl', 'mark', {}, [u, state, ids!], [1]) : undefined;
    if (mark) ops.push(mark);
    ops.push(ctx.op(`sample.prepare(${V})`, 'sample.wgsl', 'prepare', {}, [u, state, s, this.logits], grid(Math.ceil(V / 256))));
    if (k.greedy) return { ops: [...ops, ...argmaxOps(ctx, u, state, s, this.out, V)], mark };
    const blocks = Math.ceil(V / BLOCK);
    const radix = (topPRound: boolean) => RADIX_SHIFTS.flatMap((shift) => {
      const c = { RADIX_SHIFT: shift, TOP_P_ROUND: topPRound ? 1 : 0 };
      const what = `${topPRound ? 'top_p' : 'top_k'}@${shift}`;
      return [
        ctx.op(`sample.hist ${what}`, 'sample.wgsl', 'radix_hist', c, [u, state, s], [blocks]),
        ctx.op(`sample.select ${what}`, 'sample.wgsl', 'radix_select', c, [u, state], [1]),
      ];
    });
    if (k.topK) ops.push(...radix(false));
    if (k.topP) ops.push(...radix(true));
    ops.push(
      ctx.op('sample.block_mass', 'sample.wgsl', 'block_mass', {}, [u, state, s], [blocks]),
      ctx.op('sample.pick', 'sample.wgsl', 'pick', {}, [u, state, s, this.out], [1]),
    );
    return { ops, mark };
  }
}
