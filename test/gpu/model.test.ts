// The whole forward pass on WebGPU (f32 weights) against the Hugging Face fixtures: logits, every layer's
// output, routing, caches, mixer/MoE taps, teacher-forced decode; and prefill == split prefill == decode.
// Tolerances: the manifest's fp32_runtime ones (rel 2e-4 on hidden states, caches and GDN tensors; logits
// max-abs 1e-3). Presets stress and small come from ../shared and are skipped (with a note) when absent.
import { beforeAll, describe, expect, it } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { Qwen3NextGpuModel, type ModelOptions } from '../../src/model/model.ts';
import { modelContextLimit } from '../../src/config.ts';
import { ALL_PRESETS, locatePreset, type Preset, type Tensor } from '../helpers/fixtures.ts';
import { withGpuErrors, getTestDevice } from '../helpers/gpu.ts';
import { diff, expectClose } from '../helpers/compare.ts';
import { ContextLengthError } from '../../src/errors.ts';
import { checkpointSource, QUANT_F32, type WeightSource } from '../../src/format/pack.ts';

const TOL = { logits: { maxAbs: 1e-3, rel: 2e-4 }, hidden: { rel: 2e-4 }, state: { rel: 2e-4 }, conv: { rel: 1e-4 } };

/** Slice [.., 1:] of the HF conv state (n, C, K) -> (n, C, K-1), the columns we keep. */
function convTail(t: Tensor, layer: number): Float32Array {
  const [, C, K] = t.shape;
  const out = new Float32Array(C * (K - 1));
  for (let c = 0; c < C; c++) for (let j = 1; j < K; j++) out[c * (K - 1) + j - 1] = t.data[(layer * C + c) * K + j];
  return out;
}

/** Compare the GPU cache with a fixture's conv_state / recurrent_state / kv_keys / kv_values (prefix = '' or 'prefill.'). */
async function expectCaches(model: Qwen3NextGpuModel, t: Map<string, Tensor>, prefix: string) {
  const c = model.config, ctx = model.ctx;
  let lin = 0, full = 0;
  for (const [l, lc] of model.cache.layers.entries()) {
    if (lc.type === 'linear_attention') {
      const conv = t.get(`${prefix}conv_state`)!, rec = t.get(`${prefix}recurrent_state`)!;
      const S = c.linearNumValueHeads * c.linearKeyHeadDim * c.linearValueHeadDim;
      expectClose(`L${l} conv_state`, await ctx.readF32(lc.conv, c.convDim * (c.convKernel - 1)), convTail(conv, lin), TOL.conv);
      expectClose(`L${l} recurrent_state`, await ctx.readF32(lc.recurrent, S), rec.data.subarray(lin * S, (lin + 1) * S), TOL.state);
      lin++;
    } else {
      const keys = t.get(`${prefix}kv_keys`)!, Tn = keys.shape[2], D = c.headDim, Hkv = c.numKeyValueHeads;
      for (const [name, buf] of [['kv_keys', lc.keys], ['kv_values', lc.values]] as const) {
        const want = t.get(`${prefix}${name}`)!.data.subarray(full * Hkv * Tn * D, (full + 1) * Hkv * Tn * D);
        const all = await ctx.readF32(buf, Hkv * model.cache.maxT * D);
        const got = new Float32Array(Hkv * Tn * D);
        for (let h = 0; h < Hkv; h++) got.set(all.subarray(h * model.cache.maxT * D, (h * model.cache.maxT + Tn) * D), h * Tn * D);
        expectClose(`L${l} ${name}`, got, want, TOL.state);
      }
      full++;
    }
  }
}

/**
 * tiny's prefill_T200 split at 63/64/65/129, run token by token, and in steps of 2-4 tokens with every row's logits
 * (the size of a speculative verify step): HF's logits each time; the decode list replayed.
 */
async function splitsAndDecode(model: Qwen3NextGpuModel, preset: Preset) {
  const c = preset.case('prefill_T200'), ids = c.input_ids!, V = model.config.vocabSize;
  const want = (await preset.load(c)).get('logits')!.data;
  for (const split of [63, 64, 65, 129]) {
    model.reset();
    const a = await model.forward(ids.slice(0, split), { logits: 'all' });
    const b = await model.forward(ids.slice(split), { logits: 'all' });
    expectClose(`split at ${split}: first part`, a, want.subarray(0, split * V), TOL.logits);
    expectClose(`split at ${split}: second part`, b, want.subarray(split * V), TOL.logits);
  }
  // Decode from an empty cache, a prefill after it, decode across the 64-token chunk boundary (SwiftShader's time:
  // 14 decode steps, not 70), then few-token steps reading what the decode ones wrote.
  model.reset();
  const decode = async (from: number, to: number) => {
    for (let i = from; i < to; i++) expectClose(`decode token ${i}`, await model.forward([ids[i]]), want.subarray(i * V, (i + 1) * V), TOL.logits);
  };
  await decode(0, 4);
  expectClose('prefill after decode', await model.forward(ids.slice(4, 60), { logits: 'all' }), want.subarray(4 * V, 60 * V), TOL.logits);
  await decode(60, 70);
  let at = 70;
  for (const T of [3, 2, 4, 4, 1, 3]) {
    const logits = await model.forward(ids.slice(at, at + T), { logits: 'all' });
    expectClose(`step of ${T} at ${at}`, logits, want.subarray(at * V, (at + T) * V), TOL.logits);
    at += T;
  }
  const list = model.forwardBuilder.replayOps(1, { logits: 'last' });
  expect(model.forwardBuilder.replayOps(1, { logits: 'last' })).toBe(list); // replayed, not rebuilt
}

const LAYER_TAPS = (L: number) => Array.from({ length: L }, (_, l) => [`L${l}.out`, `L${l}.router_idx`]).flat();

for (const name of ALL_PRESETS) {
  const preset: Preset | null = locatePreset(name);
  describe.runIf(preset)(`GPU forward (f32) vs HF: ${name}`, () => {
    if (!preset) return; // vitest still collects the body of a skipped suite
    let model: Qwen3NextGpuModel;
    beforeAll(async () => {
      const ckpt = await preset!.openCheckpoint();
      const maxContext = Math.min(1024, modelContextLimit(ckpt.config)); // yarn: 256 positions
      model = await Qwen3NextGpuModel.fromCheckpoint(new GpuContext(await getTestDevice()), ckpt, { maxContext, maxTokensPerStep: 320, kvCache: 'f32' });
    });
    const L = () => model.config.numLayers;

    for (const c of preset!.cases('prefill')) {
      it(`${c.name}: logits, layer outputs, routing, caches`, () =>
        withGpuErrors(async () => {
          const t = await preset!.load(c);
          const T = c.seq_len!;
          model.reset();
          const single = T <= model.maxTokensPerStep;
          const logits = await model.forward(c.input_ids!, { logits: 'all', taps: single ? ['embeddings', 'final_hidden', ...LAYER_TAPS(L())] : [] });
          expectClose('logits', logits, t.get('logits')!.data, TOL.logits);
          if (single) {
            const H = model.config.hiddenSize, k = model.config.numExpertsPerTok;
            expectClose('embeddings', await model.readTap('embeddings'), t.get('embeddings')!.data, TOL.hidden);
            expectClose('final_hidden', await model.readTap('final_hidden'), t.get('final_hidden')!.data, TOL.hidden);
            for (let l = 0; l < L(); l++) {
              if (l < L() - 1) expectClose(`layer_outputs[${l}]`, await model.readTap(`L${l}.out`), t.get('layer_outputs')!.data.subarray(l * T * H, (l + 1) * T * H), TOL.hidden);
              const idx = new Uint32Array((await model.readTap(`L${l}.router_idx`)).buffer);
              expect(Array.from(idx), `router_topk_idx layer ${l}`).toEqual(Array.from(t.get('router_topk_idx')!.data.subarray(l * T * k, (l + 1) * T * k)));
            }
          }
          await expectCaches(model, t, '');
        }));
    }

    for (const c of preset!.cases('taps')) {
      it(`${c.name}: mixer and MoE in/out, GDN gates and core output per layer`, () =>
        withGpuErrors(async () => {
          const t = await preset!.load(c);
          const cfg = model.config;
          const names = c.tapped_layers!.flatMap((l) => [`L${l}.mixer_in`, `L${l}.mixer_out`, `L${l}.moe_in`, `L${l}.moe_out`,
            ...(cfg.layerTypes[l] === 'linear_attention' ? [`L${l}.gdn.g`, `L${l}.gdn.beta`, `L${l}.gdn.core_out`] : [])]);
          model.reset();
          await model.forward(c.input_ids ?? preset!.case(c.name.replace('taps', 'prefill')).input_ids!, { logits: 'all', taps: names });
          for (const n of names) expectClose(n, await model.readTap(n), t.get(n)!.data, TOL.hidden);
        }));
    }

    if (name === 'tiny') it('split prefill at 63/64/65/129 and token-by-token decode equal the whole prefill', () => withGpuErrors(() => splitsAndDecode(model, preset!)));

    for (const c of preset!.cases('decode')) {
      it(`${c.name}: prefill then 16 teacher-forced decode steps, caches after each phase`, () =>
        withGpuErrors(async () => {
          const t = await preset!.load(c);
          const V = model.config.vocabSize;
          model.reset();
          const last = await model.forward(c.prompt_ids!, { logits: 'last' });
          expectClose('prefill_last_logits', last, t.get('prefill_last_logits')!.data, TOL.logits);
          await expectCaches(model, t, 'prefill.');
          const inputs = t.get('input_ids')!.data, steps = t.get('step_logits')!.data;
          for (let s = 0; s < inputs.length; s++) {
            const logits = await model.forward([inputs[s]]);
            expectClose(`step ${s} logits`, logits, steps.subarray(s * V, (s + 1) * V), TOL.logits);
          }
          await expectCaches(model, t, 'final.');
        }));
    }
  });
}

// The default f16 K/V cache (half the memory and of the bytes a decode token reads): logits within the same fp32
// tolerances of HF on every local preset (the caches, rounded to f16, are compared by the f32 runs above only); on
// tiny, split prefill and token-by-token decode too, with the rounding at every chunk boundary.
for (const name of ['tiny', 'asym', 'yarn'] as const) {
  const preset = locatePreset(name);
  describe.runIf(preset)(`GPU forward, f16 K/V cache, vs HF: ${name}`, () => {
    let model: Qwen3NextGpuModel;
    beforeAll(async () => {
      model = await Qwen3NextGpuModel.fromCheckpoint(new GpuContext(await getTestDevice()), await preset!.openCheckpoint(), { maxContext: 256, maxTokensPerStep: 256 });
      expect(model.cache.halfKv).toBe(true); // the default
    });
    it('every prefill case: logits', () =>
      withGpuErrors(async () => {
        for (const c of preset!.cases('prefill')) {
          model.reset();
          expectClose(`${c.name} logits`, await model.forward(c.input_ids!, { logits: 'all' }), (await preset!.load(c)).get('logits')!.data, TOL.logits);
        }
      }));
    if (name === 'tiny') it('split prefill at 63/64/65/129 and token-by-token decode equal the whole prefill', () => withGpuErrors(() => splitsAndDecode(model, preset!)));
    if (name === 'tiny') {
      it('the state read as f32 (a saved session) and written back continues exactly as the live one', () =>
        withGpuErrors(async () => {
          const ids = preset!.case('prefill_T65').input_ids!;
          model.reset();
          await model.forward(ids.slice(0, 40));
          const state = await model.cache.read();
          const live = await model.forward(ids.slice(40, 43), { logits: 'all' });
          model.reset();
          model.cache.write(40, state as Float32Array<ArrayBuffer>[]);
          expect(Array.from(await model.forward(ids.slice(40, 43), { logits: 'all' }))).toEqual(Array.from(live));
        }));
    }
  });
}

describe.runIf(locatePreset('yarn'))('YaRN switched by the yarn option (engine / CLI), whatever config.json says', () => {
  const preset = locatePreset('yarn')!;
  let withConfigYarn: { source: WeightSource; want: Float32Array; ids: number[] };
  beforeAll(async () => {
    const c = preset.case('prefill_T65'), ckpt = await preset.openCheckpoint();
    withConfigYarn = { source: checkpointSource(ckpt, QUANT_F32), want: (await preset.load(c)).get('logits')!.data as Float32Array, ids: c.input_ids! };
  });
  const logits = (source: WeightSource, opts: ModelOptions) =>
    withGpuErrors(async (device) => {
      const model = await Qwen3NextGpuModel.load(new GpuContext(device), source, { maxContext: 80, maxTokensPerStep: 65, kvCache: 'f32', ...opts });
      return model.forward(withConfigYarn.ids, { logits: 'all' });
    });

  it('a config without rope_scaling + { factor 4, original 64 } gives HF\'s YaRN logits; without the option it does not; `false` turns the config\'s off', async () => {
    const { source, want } = withConfigYarn;
    const plain = { ...source, config: { ...source.config, ropeScaling: { type: 'default' as const } } };
    expectClose('yarn on by option', await logits(plain, { yarn: { factor: 4, originalMaxPositionEmbeddings: 64 } }), want, TOL.logits);
    const off = await logits(plain, {});
    expect(diff(off, want).maxAbs).toBeGreaterThan(1e-2); // past position 0 the rope differs
    expect(Array.from(await logits(source, { yarn: false }))).toEqual(Array.from(off));
  });

  it('a maxContext past the model\'s positions is a ContextLengthError that says how YaRN extends them', async () => {
    const { source } = withConfigYarn;
    const plain = { ...source, config: { ...source.config, ropeScaling: { type: 'default' as const } } };
    const err = await Qwen3NextGpuModel.load(new GpuContext(await getTestDevice()), plain, { maxContext: 300 }).catch((e) => e);
    expect(err).toBeInstanceOf(ContextLengthError);
    expect(err.message).toMatch(/maxContext 300 is past the 256 positions this model was made for\. Turn on YaRN \(engine option `yarn: true`, CLI --yarn\) for up to 1,024/);
    expect(err.limit).toBe(256);
    await expect(Qwen3NextGpuModel.load(new GpuContext(await getTestDevice()), source, { maxContext: 257 })).rejects.toThrow(/past the 256 positions this model was made for\. Lower maxContext/);
  });
});
