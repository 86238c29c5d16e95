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

function paramsBuffer(ctx: GpuContext, V: number, topK: number, nPrev: number, temperature: number, topP: number, random: number, penalty: number): GPUBuffer {
  const words = new Uint32Array(8);
  const f = new Float32Array(words.buffer);
  words.set([V, Math.ceil(V / BLOCK), topK, nPrev]);
  f.set([temperature, topP, random, penalty], 4);
  return ctx.uniform(words, 'sample.params');
}

const argmaxOps = (ctx: GpuContext, params: GPUBuffer, state: GPUBuffer, values: Binding, out: Binding, V: number): Op[] => [
  ctx.op(`argmax_blocks(${V})`, 'sample.wgsl', 'argmax_blocks', {}, [params, state, values], [Math.ceil(V / BLOCK)]),
  ctx.op('argmax_final', 'sample.wgsl', 'argmax_final', {}, [params, state, values, out], [1]),
];

/** out[0] (u32) = argmax of logits (V) f32; ties go to the lowest index as in torch.argmax. */
export function argmax(ctx: GpuContext, logits: Binding, out: Binding, V: number): Op[] {
  const params = paramsBuffer(ctx, V, 0, 0, 1, 1, 0, 1);
  return argmaxOps(ctx, params, scratch(ctx, V).state, logits, out, V);
}

/**
 * out[0] (u32) = a token drawn from logits (V) f32 as HF's generate does with do_sample: repetition penalty,
 * temperature, top-k, top-p, then a draw with `random`. The draw takes the first kept id (in id order) whose
 * cumulative probability exceeds `random`. Ties at a top-k/top-p threshold are all kept. temperature <= 0 is
 * greedy (penalty, then argmax).
 */
export function sample(ctx: GpuContext, logits: Binding, out: Binding, V: number, params: SampleParams): Op[] {
  const { topK, topP, random } = params;
  const greedy = !(params.temperature > 0);
  const penalty = params.repetitionPenalty ?? 1;
  const nPrev = penalty !== 1 && params.previous ? params.previous.count : 0;
  if (greedy && nPrev === 0) return argmax(ctx, logits, out, V);

  const { s, state } = scratch(ctx, V);
  const temperature = greedy ? 1 : params.temperature;
  const u = paramsBuffer(ctx, V, topK, nPrev, temperature, topP, random, penalty);
  const ops: Op[] = [ctx.op('sample.reset', 'sample.wgsl', 'reset', {}, [u, state], [1])];
  if (nPrev > 0) ops.push(ctx.op(`sample.mark(${nPrev})`, 'sample.wgsl', 'mark', {}, [u, state, params.previous!.ids], grid(Math.ceil(nPrev / 256))));
  ops.push(ctx.op(`sample.prepare(${V})`, 'sample.wgsl', 'prepare', {}, [u, state, s, logits], grid(Math.ceil(V / 256))));
  if (greedy) return [...ops, ...argmaxOps(ctx, u, state, s, out, V)];

  const blocks = Math.ceil(V / BLOCK);
  const radix = (topPRound: boolean) => RADIX_SHIFTS.flatMap((shift) => {
    const c = { RADIX_SHIFT: shift, TOP_P_ROUND: topPRound ? 1 : 0 };
    const what = `${topPRound ? 'top_p' : 'top_k'}@${shift}`;
    return [
      ctx.op(`sample.hist ${what}`, 'sample.wgsl', 'radix_hist', c, [u, state, s], [blocks]),
      ctx.op(`sample.select ${what}`, 'sample.wgsl', 'radix_select', c, [u, state], [1]),
    ];
  });
  if (topK > 0 && topK < V) ops.push(...radix(false));
  if (topP < 1) ops.push(...radix(true));
  ops.push(
    ctx.op('sample.block_mass', 'sample.wgsl', 'block_mass', {}, [u, state, s], [blocks]),
    ctx.op('sample.pick', 'sample.wgsl', 'pick', {}, [u, state, s, out], [1]),
  );
  return ops;
}
