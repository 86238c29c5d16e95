// The CPU reference forward pass against the Hugging Face fixtures, every preset present: prefill cases
// (logits, embeddings, every layer output, final hidden, routing, caches), the taps case (mixer/MoE in/out,
// GDN kernel inputs/outputs) and the decode case (cached prefill + 16 teacher-forced steps).
// Tolerances: the manifest's tolerances.fp32_runtime; router indices exact.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALL_PRESETS, locatePreset, readTensorFile, type Preset, type Tensor } from '../helpers/fixtures.ts';
import { expectClose } from '../helpers/compare.ts';
import { Qwen3NextForCausalLM, recordTaps, type TapName } from '../../src/reference/model.ts';
import { stackedStates, type Qwen3NextDynamicCache } from '../../src/reference/dynamic-cache.ts';

type Tol = { rel?: number; maxAbs?: number };

function tolerances(p: Preset) {
  const t = p.manifest.tolerances.fp32_runtime as Record<string, { rel: number; max_abs?: number }>;
  return {
    logits: { rel: t.logits.rel, maxAbs: t.logits.max_abs },
    hidden: { rel: t.hidden_and_layer_outputs.rel },
    gdn: { rel: t.gdn_core_out_and_states.rel },
    kv: { rel: t.kv_cache.rel },
    conv: { rel: t.conv_state.rel },
  };
}

// worst error seen per preset and category, printed at the end (the report's table)
const worst = new Map<string, { rel: number; maxAbs: number }>();
afterAll(() => {
  const rows = [...worst].map(([k, v]) => `  ${k.padEnd(24)} rel ${v.rel.toExponential(2)}  maxAbs ${v.maxAbs.toExponential(2)}`);
  console.log(`worst errors vs HF fixtures:\n${rows.join('\n')}`);
});

function check(preset: string, category: string, label: string, actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tol) {
  const d = expectClose(`${preset} ${label}`, actual, expected, tol);
  const key = `${preset}/${category}`, w = worst.get(key) ?? { rel: 0, maxAbs: 0 };
  worst.set(key, { rel: Math.max(w.rel, d.rel), maxAbs: Math.max(w.maxAbs, d.maxAbs) });
}

function checkIndices(label: string, actual: Int32Array, expected: Int32Array) {
  const bad = actual.findIndex((e, i) => e !== expected[i]);
  expect(bad, `${label}: first mismatch at [${bad}] got ${actual[bad]}, want ${expected[bad]}`).toBe(-1);
  expect(actual.length).toBe(expected.length);
}

/** Fixture slice [i] of a tensor with a leading axis. */
function slab(t: Tensor, i: number): Float32Array | Int32Array {
  const n = t.data.length / t.shape[0];
  return t.data.subarray(i * n, (i + 1) * n);
}

/** HF conv state (…, K) -> the K-1 columns decode reads. */
function dropOldestColumn(x: Float32Array | Int32Array, K: number): Float32Array {
  const out = new Float32Array((x.length / K) * (K - 1));
  for (let r = 0; r < x.length / K; r++) for (let j = 1; j < K; j++) out[r * (K - 1) + j - 1] = x[r * K + j];
  return out;
}

function checkCaches(preset: Preset, prefix: string, cache: Qwen3NextDynamicCache, f: Map<string, Tensor>) {
  const tol = tolerances(preset), K = cache.config.convKernel, s = stackedStates(cache);
  check(preset.name, 'conv_state', `${prefix}conv_state`, s.conv_state, dropOldestColumn(f.get(`${prefix}conv_state`)!.data, K), tol.conv);
  check(preset.name, 'recurrent_state', `${prefix}recurrent_state`, s.recurrent_state, f.get(`${prefix}recurrent_state`)!.data, tol.gdn);
  check(preset.name, 'kv_cache', `${prefix}kv_keys`, s.kv_keys, f.get(`${prefix}kv_keys`)!.data, tol.kv);
  check(preset.name, 'kv_cache', `${prefix}kv_values`, s.kv_values, f.get(`${prefix}kv_values`)!.data, tol.kv);
}

for (const name of ALL_PRESETS) {
  const preset = locatePreset(name);
  if (!preset) {
    describe.skip(`reference ${name} (fixtures absent)`, () => it('skipped', () => {}));
    continue;
  }
  describe(`reference ${name}`, () => {
    const p = preset;
    let model: Qwen3NextForCausalLM;
    beforeAll(async () => {
      model = await Qwen3NextForCausalLM.load(await p.openCheckpoint());
    });

    it('uses HF fp32 rope inv_freq', async () => {
      const misc = await readTensorFile(`${p.dir}/fixtures/misc.safetensors`);
      const hf = misc.get('rope_inv_freq')!.data;
      expect(Array.from(model.rotary.invFreq)).toEqual(Array.from(hf)); // bit-exact
    });

    for (const c of p.cases('prefill')) {
      it(`${c.name}: logits, hidden states, routing, caches`, async () => {
        const f = await p.load(c), tol = tolerances(p), cfg = model.config;
        const T = c.seq_len!, L = cfg.numLayers;
        const rec = recordTaps(), cache = model.newCache();
        const logits = model.forward(f.get('input_ids')!.data, cache, { tap: rec.tap });

        check(name, 'logits', `${c.name} logits`, logits, f.get('logits')!.data, tol.logits);
        check(name, 'hidden', `${c.name} embeddings`, rec.get('embeddings'), f.get('embeddings')!.data, tol.hidden);
        for (let l = 0; l < L; l++) {
          check(name, 'hidden', `${c.name} layer_outputs[${l}]`, rec.get('layer_output', l), slab(f.get('layer_outputs')!, l), tol.hidden);
          checkIndices(`${name} ${c.name} router_topk_idx[${l}]`, rec.get('router_topk_idx', l) as Int32Array, slab(f.get('router_topk_idx')!, l) as Int32Array);
          check(name, 'router_w', `${c.name} router_topk_w[${l}]`, rec.get('router_topk_w', l), slab(f.get('router_topk_w')!, l), tol.hidden);
          if (f.has('router_logits')) check(name, 'router_logits', `${c.name} router_logits[${l}]`, rec.get('router_logits', l), slab(f.get('router_logits')!, l), tol.hidden);
        }
        check(name, 'hidden', `${c.name} final_hidden`, rec.get('final_hidden'), f.get('final_hidden')!.data, tol.hidden);
        checkCaches(p, '', cache, f);
        expect(cache.position).toBe(T);
      });
    }

    for (const c of p.cases('taps')) {
      it(`${c.name}: mixer / MoE in-out and GDN kernel taps`, async () => {
        const f = await p.load(c), tol = tolerances(p), cfg = model.config;
        const ids = (await p.load(p.case((c as { same_input_as?: string }).same_input_as!))).get('input_ids')!.data;
        const rec = recordTaps();
        model.forward(ids, model.newCache(), { tap: rec.tap });
        for (const l of c.tapped_layers!) {
          for (const t of ['mixer_in', 'mixer_out', 'moe_in', 'moe_out'] as const) {
            check(name, 'hidden', `${c.name} L${l}.${t}`, rec.get(t, l), f.get(`L${l}.${t}`)!.data, tol.hidden);
          }
          if (cfg.layerTypes[l] !== 'linear_attention') continue;
          for (const t of ['q', 'k', 'v', 'g', 'beta', 'core_out', 'final_state'] as const) {
            check(name, `gdn.${t}`, `${c.name} L${l}.gdn.${t}`, rec.get(`gdn.${t}` as TapName, l), f.get(`L${l}.gdn.${t}`)!.data, tol.gdn);
          }
        }
      });
    }

    for (const c of p.cases('decode')) {
      it(`${c.name}: cached prefill, then ${c.steps} teacher-forced decode steps`, async () => {
        const f = await p.load(c), tol = tolerances(p), cfg = model.config;
        const P = c.prompt_len!, V = cfg.vocabSize, K = cfg.convKernel;
        const cache = model.newCache();
        const prefill = model.forward(f.get('prompt_ids')!.data, cache);
        check(name, 'logits', `${c.name} prefill_last_logits`, prefill.subarray((P - 1) * V), f.get('prefill_last_logits')!.data, tol.logits);
        checkCaches(p, 'prefill.', cache, f);

        const input = f.get('input_ids')!.data, next = f.get('next_ids')!.data;
        const l0 = cache.layers[cfg.layerTypes.indexOf('linear_attention')];
        if (l0.kind !== 'linear_attention') throw new Error('unreachable');
        for (let s = 0; s < c.steps!; s++) {
          const logits = model.forward([input[s]], cache);
          check(name, 'logits', `${c.name} step_logits[${s}]`, logits, slab(f.get('step_logits')!, s), tol.logits);
          expect(logits.indexOf(Math.max(...logits)), `${c.name} greedy id at step ${s}`).toBe(next[s]);
          check(name, 'conv_state', `${c.name} steps.conv_state_L0[${s}]`, l0.conv_state, dropOldestColumn(slab(f.get('steps.conv_state_L0')!, s), K), tol.conv);
          check(name, 'recurrent_state', `${c.name} steps.recurrent_state_L0[${s}]`, l0.recurrent_state, slab(f.get('steps.recurrent_state_L0')!, s), tol.gdn);
        }
        checkCaches(p, 'final.', cache, f);
        expect(cache.position).toBe(P + c.steps!);

        // the same positions from one no-cache forward over prompt + input_ids
        const all = Int32Array.from([...f.get('prompt_ids')!.data, ...input]);
        const nocache = model.forward(all, model.newCache()).subarray((P - 1) * V, (P + c.steps!) * V);
        check(name, 'logits', `${c.name} nocache_logits`, nocache, f.get('nocache_logits')!.data, tol.logits);
      });
    }
  });
}
