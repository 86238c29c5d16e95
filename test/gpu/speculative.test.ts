// Speculative decoding (src/model/speculative.ts): the reply is token for token the one plain decoding gives, for
// 1-3 draft tokens, greedy and sampled, with the fixture presets' random MTP layers (most drafts rejected: the
// rollback runs every round), with oracle drafts (all accepted) and random ones (all rejected), and a reply that
// stops inside a round leaves the state of exactly the tokens it fed (the next logits equal a fresh prefill's).
import { describe, expect, it } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { generate, type GenerationConfig } from '../../src/model/generate.ts';
import { Qwen3NextGpuModel } from '../../src/model/model.ts';
import { Qwen3NextSpeculativeDecoder, type SpeculativeOptions } from '../../src/model/speculative.ts';
import { locatePreset } from '../helpers/fixtures.ts';
import { expectClose } from '../helpers/compare.ts';
import { withGpuErrors } from '../helpers/gpu.ts';

const PROMPT = [5, 17, 42, 99, 3, 250, 7, 11, 64, 300, 2]; // 11 tokens: two prefill steps of 8, the second of 3

async function reply(model: Qwen3NextGpuModel, cfg: Partial<GenerationConfig>, spec?: SpeculativeOptions) {
  model.reset();
  const decoder = spec ? new Qwen3NextSpeculativeDecoder(model, spec) : undefined;
  const ids: number[] = [];
  for await (const id of generate(model, PROMPT, cfg, undefined, decoder)) ids.push(id);
  return { ids, stats: decoder?.stats };
}

/** The logits after `ids` from an empty state, to compare a state against. */
async function fresh(model: Qwen3NextGpuModel, ids: number[]) {
  model.reset();
  return model.forward(ids);
}

describe('speculative decoding', () => {
  // tiny runs greedy and sampled replies, and the oracle (3 drafts), random (2) and switch-off cases; asym (other head
  // counts and widths) a greedy one.
  for (const [name, greedyKs, sampledKs, bounds] of [['tiny', [1, 3], [2], true], ['asym', [2], [], false]] as const) {
    it(`${name}: greedy (${greedyKs} drafts)${sampledKs.length ? ` and sampled (${sampledKs})` : ''} replies equal plain decoding${bounds ? '; oracle, random and switched-off drafts' : ''}`, () =>
      withGpuErrors(async (device) => {
        const ckpt = await locatePreset(name)!.openCheckpoint();
        const model = await Qwen3NextGpuModel.fromCheckpoint(new GpuContext(device), ckpt, { maxContext: 64, maxTokensPerStep: 8, kvCache: 'f32', mtp: true });
        const greedy = { max_new_tokens: 10 }, sampled = { max_new_tokens: 10, temperature: 0.9, top_k: 40, seed: 7 };
        const plain = (await reply(model, greedy)).ids, plainSampled = sampledKs.length ? (await reply(model, sampled)).ids : [];
        if (sampledKs.length) expect(plainSampled).not.toEqual(plain); // the sampled case is a different reply
        for (const draftTokens of greedyKs) {
          const g = await reply(model, greedy, { draftTokens, minAcceptance: 0 });
          expect(g.ids, `greedy, ${draftTokens} drafts`).toEqual(plain);
          expect(g.stats!.drafted).toBeGreaterThan(0);
          console.log(`[spec] ${name} k=${draftTokens}: ${g.stats!.accepted}/${g.stats!.drafted} random-MTP drafts accepted in ${g.stats!.rounds} rounds`);
        }
        for (const draftTokens of sampledKs) expect((await reply(model, sampled, { draftTokens, minAcceptance: 0 })).ids, `sampled, ${draftTokens} drafts`).toEqual(plainSampled);
        if (!bounds) return;
        const at = (P: number, k: number) => Array.from({ length: k }, (_, j) => plain[P - PROMPT.length + 1 + j] ?? 0);
        const oracle = await reply(model, greedy, { draftTokens: 3, drafts: at });
        expect(oracle.ids).toEqual(plain);
        expect(oracle.stats!.rounds).toBe(Math.ceil(plain.length / 4));
        expect(oracle.stats!.accepted).toBe(oracle.stats!.drafted);
        const wrong = (P: number, k: number) => at(P, k).map((id) => (id + 1) % ckpt.config.vocabSize);
        const random = await reply(model, greedy, { draftTokens: 2, drafts: wrong, minAcceptance: 0 });
        expect(random.ids).toEqual(plain);
        expect(random.stats!.accepted).toBe(0);
        // Always rejected with the switch-off on: after 16 rounds the reply goes on plainly, still the same
        const off = await reply(model, { max_new_tokens: 18 }, { draftTokens: 1, drafts: wrong });
        expect(off.ids.slice(0, 10)).toEqual(plain);
        expect(off.stats).toMatchObject({ rounds: 16, plain: 2 });
      }));
  }

  it('a reply that stops inside a round (EOS) keeps the state of the tokens fed; 2 drafts, oracle and MTP', () =>
    withGpuErrors(async (device) => {
      const ckpt = await locatePreset('tiny')!.openCheckpoint();
      const model = await Qwen3NextGpuModel.fromCheckpoint(new GpuContext(device), ckpt, { maxContext: 64, maxTokensPerStep: 8, kvCache: 'f32', mtp: true });
      const plain = (await reply(model, { max_new_tokens: 12 })).ids;
      const stop = plain[6]; // position 6 of the reply: inside the second 3-token round of an oracle with 2 drafts
      const at = (P: number, k: number) => Array.from({ length: k }, (_, j) => plain[P - PROMPT.length + 1 + j] ?? 0);
      for (const spec of [{ draftTokens: 2, drafts: at }, { draftTokens: 2, minAcceptance: 0 }]) {
        const got = await reply(model, { max_new_tokens: 12, eos_token_id: [stop] }, spec);
        expect(got.ids).toEqual(plain.slice(0, plain.indexOf(stop) + 1));
        const fed = PROMPT.length + got.ids.length - 1; // the prompt and every reply token but the last
        expect(model.cache.position).toBe(fed);
        const next = await model.forward([got.ids.at(-1)!]);
        expectClose('logits after the stop', next, await fresh(model, [...PROMPT, ...got.ids]), { maxAbs: 1e-4 });
      }
    }));
});
