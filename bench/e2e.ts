// End to end at the Qwen3-Next-80B-A3B shape (48 layers, 512 experts of 2048x512, int4 experts and projections,
// q8 embeddings and lm_head), every weight resident on the GPU, filled at random (bench/weights.ts):
// prefill tokens/s at 4K, decode tokens/s at 1K / 4K / 32K context, and the GPU memory the model allocated.
// Decode at context C starts from cache position C: the attention cost depends on the number of cached keys, not
// on their values, so the KV cache is not prefilled for it (a 32K prefill would cost more device time than the run).
import { parseConfig } from '../src/config.ts';
import type { GpuContext } from '../src/gpu/context.ts';
import { QUANT_INT4 } from '../src/format/pack.ts';
import { Qwen3NextGpuModel } from '../src/model/model.ts';
import { syntheticConfig } from '../scripts/make-fullsize-layer.ts';
import { randomGpuWeights } from './weights.ts';
import { profileOps, type TokenProfile } from './profile.ts';
import { sample } from '../src/kernels/sample.ts';

export interface E2EOptions {
  layers: number;
  small?: boolean; // the same structure at toy sizes (SwiftShader guard)
  prefillT: number;
  stepT?: number; // tokens per prefill step (default prefillT); (stepT, V) f32 logits must stay under 2 GiB
  contexts: number[];
  decodeTokens: number;
  reps: number;
  /** K/V cache precision (the engine's default f16, or f32). */
  kvCache?: 'f16' | 'f32';
  /** Per-kernel GPU time of a decode token at each context (bench/profile.ts), with the read ceiling for floors. */
  profile?: { readGBs: number; fmaTFs?: number; reps: number };
}

export interface E2EResult {
  name: string;
  median: number; // ms
  perSecond: number; // tokens/s at the median
  detail: string;
}

export const GREEDY = { temperature: 0, topK: 0, topP: 1, random: 0 };
export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function runEndToEnd(ctx: GpuContext, o: E2EOptions): Promise<{ rows: E2EResult[]; gpuBytes: number; loadMs: number; profiles: { context: number; profile: TokenProfile }[]; prefillProfile?: TokenProfile }> {
  const c = parseConfig(syntheticConfig(o.layers, o.small));
  const t0 = performance.now(), before = ctx.allocatedBytes;
  const weights = randomGpuWeights(ctx, c, QUANT_INT4);
  const maxContext = Math.max(...o.contexts) + o.decodeTokens + 32;
  const model = new Qwen3NextGpuModel(ctx, weights, { maxContext, maxTokensPerStep: o.stepT ?? o.prefillT, kvCache: o.kvCache });
  await ctx.device.queue.onSubmittedWorkDone();
  const loadMs = performance.now() - t0;
  const rows: E2EResult[] = [];
  const ids = (n: number, s: number) => Array.from({ length: n }, (_, i) => (i * 7919 + s) % c.vocabSize);

  // Prefill: the whole prompt in one step from an empty cache (first token's logits read back, as generation does).
  const prefill: number[] = [];
  for (let r = 0; r <= o.reps; r++) {
    model.reset();
    const t = performance.now();
    await model.forward(ids(o.prefillT, r));
    if (r > 0) prefill.push(performance.now() - t); // rep 0 compiles the pipelines
  }
  const pm = median(prefill);
  rows.push({ name: `prefill ${o.prefillT} tokens`, median: pm, perSecond: (o.prefillT / pm) * 1000, detail: `steps of ${o.stepT ?? o.prefillT}, ${o.reps} reps` });
  // The CPU's part of a prefill step: its op list built (pipelines cached; bind groups and uniforms made), GPU idle.
  const build: number[] = [], stepT = o.stepT ?? o.prefillT;
  for (let r = 0; r < 3; r++) {
    await ctx.device.queue.onSubmittedWorkDone();
    model.cache.position = o.prefillT - stepT;
    const t = performance.now();
    const n = model.forwardBuilder.build(stepT, { logits: 'last' }).length;
    build.push(performance.now() - t);
    if (r === 2) rows.push({ name: `prefill: CPU build of a step's op list`, median: median(build), perSecond: (stepT / median(build)) * 1000, detail: `${n} ops, median of 3, GPU idle` });
  }
  // One step alone, from an idle GPU to its logits read back, at the first and at the last step's position.
  for (const p0 of new Set([0, o.prefillT - stepT])) {
    const one: number[] = [];
    for (let r = 0; r < Math.max(1, o.reps); r++) {
      await ctx.device.queue.onSubmittedWorkDone();
      model.cache.position = p0;
      const t = performance.now();
      await model.forward(ids(stepT, r));
      one.push(performance.now() - t);
    }
    rows.push({ name: `prefill: one step of ${stepT} at position ${p0}`, median: median(one), perSecond: (stepT / median(one)) * 1000, detail: `median of ${one.length}, from an idle GPU` });
  }

  // Decode: greedy, one token at a time (GPU argmax, 4-byte readback), the op list replayed each token.
  for (const C of o.contexts) {
    model.reset();
    model.cache.position = C;
    let tok = 1;
    const ms: number[] = [];
    for (let i = 0; i < o.decodeTokens + 2; i++) {
      const t = performance.now();
      tok = await model.nextToken([tok % c.vocabSize], GREEDY);
      if (i >= 2) ms.push(performance.now() - t);
    }
    const dm = median(ms);
    rows.push({ name: `decode at ${C} context`, median: dm, perSecond: 1000 / dm, detail: `median of ${o.decodeTokens} tokens` });
    // The engine's loop: the step feeding token n queued (its input sampled on the GPU) before token n is read.
    model.reset();
    model.cache.position = C;
    const ahead: number[] = [];
    let pending = await model.submitToken(1, GREEDY);
    for (let i = 0; i < o.decodeTokens + 2; i++) {
      const t = performance.now();
      const queued = await model.submitToken(undefined, GREEDY);
      await pending.read();
      pending = queued;
      if (i >= 2) ahead.push(performance.now() - t);
    }
    pending.discard();
    const am = median(ahead);
    rows.push({ name: `decode at ${C} context, one step ahead (engine)`, median: am, perSecond: 1000 / am, detail: `median of ${o.decodeTokens} tokens` });
  }

  // Where a decode token's time goes, at the middle context: the CPU's share (encoding ~900 dispatches of the
  // replayed list and submitting them) and back-to-back execution with no readback between tokens, which is what
  // a loop that feeds the sampled id to the next step on the GPU could reach.
  const C = o.contexts[Math.floor(o.contexts.length / 2)], n = 20, fb = model.forwardBuilder;
  model.reset();
  model.cache.position = C;
  let encode = 0;
  const t = performance.now();
  for (let i = 0; i < n; i++) {
    const a = performance.now();
    ctx.run(fb.replayOps(1, { logits: 'last' }));
    encode += performance.now() - a;
    model.cache.position++;
  }
  await ctx.device.queue.onSubmittedWorkDone();
  const chained = (performance.now() - t) / n;
  const dispatches = fb.replayOps(1, { logits: 'last' }).length;
  rows.push({ name: `decode at ${C}: CPU encode + submit only`, median: encode / n, perSecond: (1000 * n) / encode, detail: `mean of ${n}, ${dispatches} dispatches a token` });
  rows.push({ name: `decode at ${C}: back to back, no readback`, median: chained, perSecond: 1000 / chained, detail: `mean of ${n}` });
  // The CPU's part alone: each token encoded (op list re-pointed, recorded, finished) and submitted with the GPU idle.
  const enc: number[] = [], sub: number[] = [];
  for (let i = 0; i < n; i++) {
    await ctx.device.queue.onSubmittedWorkDone();
    const a = performance.now(), e = ctx.device.createCommandEncoder();
    ctx.encode(e, fb.replayOps(1, { logits: 'last' }));
    const cb = e.finish(), b = performance.now();
    ctx.device.queue.submit([cb]);
    enc.push(b - a);
    sub.push(performance.now() - b);
  }
  rows.push({ name: `decode at ${C}: CPU encode, GPU idle`, median: median(enc), perSecond: 1000 / median(enc), detail: `median of ${n}, ${((1000 * median(enc)) / dispatches).toFixed(1)} us a dispatch` });
  rows.push({ name: `decode at ${C}: CPU submit, GPU idle`, median: median(sub), perSecond: 1000 / median(sub), detail: `median of ${n}` });
  const profiles: { context: number; profile: TokenProfile }[] = [];
  for (const context of o.profile ? o.contexts : []) {
    model.reset();
    model.cache.position = context;
    const s = fb.scratch, ops = [...fb.replayOps(1, { logits: 'last' }), ...sample(ctx, s.logits, { buffer: s.ids, offset: 0, size: 4 }, c.vocabSize, GREEDY)];
    profiles.push({ context, profile: await profileOps(ctx, ops, o.profile!.reps, o.profile!.readGBs) });
  }
  // The prefill's last step (stepT tokens after prefillT - stepT in the cache), per kernel, floors by FLOPs too.
  let prefillProfile: TokenProfile | undefined;
  if (o.profile) {
    const T = o.stepT ?? o.prefillT;
    model.reset();
    model.cache.position = o.prefillT - T;
    ctx.device.queue.writeBuffer(fb.scratch.ids, 0, Uint32Array.from(ids(T, 0)));
    prefillProfile = await profileOps(ctx, fb.build(T, { logits: 'last' }), Math.min(3, o.profile.reps), o.profile.readGBs, o.profile.fmaTFs);
  }
  return { rows, gpuBytes: ctx.allocatedBytes - before, loadMs, profiles, prefillProfile };
}
