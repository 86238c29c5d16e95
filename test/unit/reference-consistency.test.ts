// Self-consistency of the CPU reference: the chunked GDN form equals the token recurrence (on HF's own kernel
// inputs and through the whole model), chunk sizes 16 and 64 agree, and a prefill split anywhere (carrying
// conv / recurrent / KV state) equals the single pass. "Tight" = rel 1e-5 of max |ref|, ~20x below the
// fixture tolerance (2e-4); the observed differences are ~1e-7..1e-6 (f64 accumulation inside the ops).
import { beforeAll, describe, it } from 'vitest';
import { ALL_PRESETS, locatePreset, type FixtureCase } from '../helpers/fixtures.ts';
import { expectClose } from '../helpers/compare.ts';
import { Qwen3NextForCausalLM } from '../../src/reference/model.ts';
import { stackedStates } from '../../src/reference/dynamic-cache.ts';
import { gatedDeltaChunked, gatedDeltaRecurrent, l2Norm } from '../../src/reference/ops.ts';

const TIGHT = { rel: 1e-5 };
const FIXTURE = { rel: 2e-4, maxAbs: 1e-3 }; // manifest tolerances.fp32_runtime.logits

for (const name of ALL_PRESETS) {
  const preset = locatePreset(name);
  if (!preset) {
    describe.skip(`reference consistency ${name} (fixtures absent)`, () => it('skipped', () => {}));
    continue;
  }
  describe(`reference consistency ${name}`, () => {
    const p = preset;
    let model: Qwen3NextForCausalLM;
    beforeAll(async () => {
      model = await Qwen3NextForCausalLM.load(await p.openCheckpoint());
    });
    const taps = p.cases('taps')[0];
    const tapsInput = p.case((taps as FixtureCase & { same_input_as: string }).same_input_as);
    // the longest prefill case up to 260 tokens: crosses several chunk boundaries, stays fast
    const longCase = p.cases('prefill').filter((c) => c.seq_len! <= 260).sort((a, b) => b.seq_len! - a.seq_len!)[0];

    it(`GDN ops on HF kernel inputs (${taps.name}): chunked C=64 == C=16 == recurrence == HF`, async () => {
      const f = await p.load(taps), cfg = model.config;
      const Hv = cfg.linearNumValueHeads, dk = cfg.linearKeyHeadDim, dv = cfg.linearValueHeadDim, T = taps.seq_len!;
      for (const l of taps.tapped_layers!.filter((l) => cfg.layerTypes[l] === 'linear_attention')) {
        const get = (t: string) => f.get(`L${l}.gdn.${t}`)!.data as Float32Array;
        const q = l2Norm(get('q'), dk).map((x) => x / Math.sqrt(dk)), k = l2Norm(get('k'), dk);
        const run = (C: number | null) => {
          const S = new Float32Array(Hv * dk * dv);
          const o = C === null
            ? gatedDeltaRecurrent(q, k, get('v'), get('g'), get('beta'), S, T, Hv, dk, dv)
            : gatedDeltaChunked(q, k, get('v'), get('g'), get('beta'), S, T, Hv, dk, dv, C);
          return { o, S };
        };
        const rec = run(null), c64 = run(64), c16 = run(16);
        for (const [label, x] of [['C=64', c64], ['C=16', c16]] as const) {
          expectClose(`L${l} ${label} core_out vs recurrence`, x.o, rec.o, TIGHT);
          expectClose(`L${l} ${label} state vs recurrence`, x.S, rec.S, TIGHT);
        }
        expectClose(`L${l} recurrence core_out vs HF`, rec.o, get('core_out'), { rel: 2e-4 });
        expectClose(`L${l} recurrence state vs HF`, rec.S, get('final_state'), { rel: 2e-4 });
      }
    });

    it(`whole model (${tapsInput.name}): gdn chunked C=64 == C=16 == recurrent`, async () => {
      const ids = (await p.load(tapsInput)).get('input_ids')!.data;
      const run = (opts: Parameters<Qwen3NextForCausalLM['forward']>[2]) => {
        const cache = model.newCache();
        return { logits: model.forward(ids, cache, opts), s: stackedStates(cache) };
      };
      const rec = run({ gdn: 'recurrent' });
      for (const [label, x] of [['C=64', run({ gdn: 'chunked', chunkSize: 64 })], ['C=16', run({ gdn: 'chunked', chunkSize: 16 })]] as const) {
        expectClose(`${label} logits vs recurrent`, x.logits, rec.logits, TIGHT);
        expectClose(`${label} recurrent_state vs recurrent`, x.s.recurrent_state, rec.s.recurrent_state, TIGHT);
      }
    });

    it(`split prefill (${longCase.name}) at 1, 63, 64, 65, 97 == single pass`, async () => {
      const f = await p.load(longCase), V = model.config.vocabSize;
      const ids = f.get('input_ids')!.data, T = ids.length;
      const wholeCache = model.newCache();
      const whole = model.forward(ids, wholeCache), wholeState = stackedStates(wholeCache);
      expectClose('single pass vs HF', whole, f.get('logits')!.data, FIXTURE);
      for (const s of [1, 63, 64, 65, 97]) {
        const cache = model.newCache();
        const logits = new Float32Array(T * V);
        logits.set(model.forward(ids.subarray(0, s), cache), 0);
        logits.set(model.forward(ids.subarray(s), cache), s * V);
        expectClose(`split ${s}: logits vs single pass`, logits, whole, TIGHT);
        expectClose(`split ${s}: logits vs HF`, logits, f.get('logits')!.data, FIXTURE);
        const st = stackedStates(cache);
        for (const k of ['conv_state', 'recurrent_state', 'kv_keys', 'kv_values'] as const) {
          expectClose(`split ${s}: ${k} vs single pass`, st[k], wholeState[k], TIGHT);
        }
      }
    });
  });
}
