// Speculative decoding at the Qwen3-Next-80B-A3B shape (random int4 weights with an MTP layer, resident), decode at
// `context` cached keys (position set, KV not prefilled: bench/e2e.ts says why): plain decoding (the engine's
// one-step-ahead loop, and lockstep: one step, then its id read back), then rounds of k = 1..3 drafts from
//   - an oracle: the model's own greedy tokens (recorded from the plain run): every draft accepted, the upper bound;
//   - random ids: every draft rejected, no MTP layer run: the cost of a verify step alone;
//   - the MTP layer (random weights: its drafts are rejected too, so this is the floor with the drafting cost).
// A round is one submit and one readback, so its cost is set against the lockstep step.
import { parseConfig } from '../src/config.ts';
import type { GpuContext } from '../src/gpu/context.ts';
import { QUANT_INT4 } from '../src/format/pack.ts';
import { decodeTokens, type TokenStreamOptions } from '../src/model/decode.ts';
import { Qwen3NextGpuModel } from '../src/model/model.ts';
import { Qwen3NextSpeculativeDecoder, type SpeculativeOptions } from '../src/model/speculative.ts';
import { syntheticConfig } from '../scripts/make-fullsize-layer.ts';
import { randomGpuWeights } from './weights.ts';
import { GREEDY, median } from './e2e.ts';
import { profileMarkdown, profileOps } from './profile.ts';

export interface SpecBenchOptions {
  layers: number;
  small?: boolean;
  context: number;
  tokens: number;
  reps: number;
  /** Draft counts to run rounds of (default 1, 2, 3; none: plain decoding and the profile only). */
  ks?: number[];
  /** Per-kernel GPU time of the token and verify op lists (bench/profile.ts), with the read ceiling for floors. */
  profile?: { readGBs: number; reps: number };
}

const PROMPT = 8;

export async function runSpeculativeBench(ctx: GpuContext, o: SpecBenchOptions): Promise<string> {
  const c = parseConfig(syntheticConfig(o.layers, o.small)), V = c.vocabSize;
  const model = new Qwen3NextGpuModel(ctx, randomGpuWeights(ctx, c, QUANT_INT4, c.numExperts, true), { maxContext: o.context + PROMPT + o.tokens + 16, maxTokensPerStep: 16 });
  const prompt = Array.from({ length: PROMPT }, (_, i) => (i * 7919 + 11) % V);
  const first = o.context + PROMPT; // position of the first generated token
  const stream = (n: number): TokenStreamOptions => ({ sampling: () => GREEDY, history: [], maxTokens: n });
  const start = async (spec?: Qwen3NextSpeculativeDecoder) => {
    model.reset();
    model.cache.position = o.context;
    await (spec ? spec.prefill(prompt.slice(0, -1)) : model.forward(prompt.slice(0, -1)));
  };
  /** ms of `n` tokens from `gen` (after the prompt), and the tokens. */
  const timed = async (gen: AsyncGenerator<number>) => {
    const ids: number[] = [];
    const t = performance.now();
    for await (const id of gen) ids.push(id);
    return { ms: performance.now() - t, ids };
  };

  // plain: the engine's loop (one step ahead) and lockstep steps
  let reference: number[] = [];
  const plainMs: number[] = [], stepMs: number[] = [];
  for (let r = 0; r <= o.reps; r++) {
    await start();
    const run = await timed(decodeTokens(model, prompt[PROMPT - 1], stream(o.tokens + 4)));
    if (r > 0) plainMs.push(run.ms / run.ids.length);
    reference = run.ids;
    await start();
    let tok = prompt[PROMPT - 1];
    for (let i = 0; i < 8; i++) {
      const t = performance.now();
      tok = await model.nextToken([tok], GREEDY);
      if (r > 0 && i >= 2) stepMs.push(performance.now() - t);
    }
  }
  const plain = median(plainMs), step = median(stepMs);
  const rows = [
    `| plain, one step ahead (the engine's loop) | - | ${(1000 / plain).toFixed(1)} | - | - | ${plain.toFixed(2)} ms/token | 1.00 |`,
    `| plain, lockstep (one step, then its id read back) | - | ${(1000 / step).toFixed(1)} | - | - | ${step.toFixed(2)} ms/step | ${(plain / step).toFixed(2)} |`,
  ];
  const oracle = (P: number, k: number) => Array.from({ length: k }, (_, j) => reference[P + 1 + j - first] ?? 0);
  const random = (P: number, k: number) => Array.from({ length: k }, (_, j) => (reference[P + 1 + j - first] + 1 + j) % V);
  const modes = [['oracle', oracle, 4], ['oracle, one submit a round', oracle, 1], ['random ids', random, 4], ['MTP layer (random weights)', undefined, 4]] as const;
  for (const k of o.ks ?? [1, 2, 3]) {
    for (const [mode, drafts, submits] of modes) {
      const opts: SpeculativeOptions = { draftTokens: k, minAcceptance: 0, drafts, submits };
      const perToken: number[] = [], perRound: number[] = [];
      let spec!: Qwen3NextSpeculativeDecoder, same = true;
      for (let r = 0; r <= o.reps; r++) {
        spec = new Qwen3NextSpeculativeDecoder(model, opts);
        await start(spec);
        const run = await timed(spec.tokens(prompt[PROMPT - 1], stream(o.tokens)));
        same &&= run.ids.every((id, i) => id === reference[i]);
        if (r > 0) { perToken.push(run.ms / run.ids.length); perRound.push(run.ms / spec.stats.rounds); }
      }
      const s = spec.stats, ms = median(perToken), round = median(perRound);
      rows.push(`| ${mode}${same ? '' : ' (reply differs!)'} | ${k} | ${(1000 / ms).toFixed(1)} | ${s.accepted}/${s.drafted} | ${s.rounds} | ${round.toFixed(2)} ms/round = ${(round / step).toFixed(2)} x step | ${(plain / ms).toFixed(2)} |`);
    }
  }
  const out = [
    `speculative decoding at ${o.context} context, ${o.tokens} tokens a run, median of ${o.reps} runs (greedy):`,
    '| drafts | k | tokens/s | accepted | rounds | cost | speed-up vs plain |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ];
  if (o.profile) { // per kernel: the plain token's list against the verify steps' (timestamp queries)
    const logitsInto = ctx.buffer(4 * V * 4, 'profile verify logits');
    for (const T of [1, 2, 4]) {
      model.reset();
      model.cache.position = o.context;
      const ops = T === 1 ? model.forwardBuilder.replayOps(1, { logits: 'last' }) : model.forwardBuilder.replayOps(T, { logits: 'all', stepStates: true, logitsInto });
      const p = await profileOps(ctx, ops, o.profile.reps, o.profile.readGBs);
      out.push(`\n${T === 1 ? 'plain decode token' : `verify step of ${T} tokens`} at ${o.context} context, per kernel:\n${profileMarkdown(p)}`);
    }
  }
  return out.join('\n');
}
