// The MTP layer on the GPU (src/model/mtp.ts) against its CPU reference (src/reference/mtp.ts) and HF's golden MTP
// logits: brown-tiny's trained layer (f32 weights from the bf16 checkpoint, f32 K/V) on the golden prompts, one call
// and row by row, its teacher-forced acceptance (golden-mtp.json's 0.60) and speculative decoding with it (HF's replies); the random mtp.* of tiny and asym against the reference; the packed brown-tiny-q4 loads it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Checkpoint } from '../../src/checkpoint/checkpoint.ts';
import { nodeFileSet } from '../../src/checkpoint/node-files.ts';
import { GpuContext } from '../../src/gpu/context.ts';
import { generate } from '../../src/model/generate.ts';
import { Qwen3NextGpuModel } from '../../src/model/model.ts';
import { Qwen3NextSpeculativeDecoder } from '../../src/model/speculative.ts';
import { Qwen3NextForCausalLM } from '../../src/reference/model.ts';
import { Qwen3NextMultiTokenPredictor } from '../../src/reference/mtp.ts';
import { loadMtpWeights, loadWeights } from '../../src/reference/weights.ts';
import { NodeFileStore } from '../../src/store/node.ts';
import { storeSource } from '../../src/store/store.ts';
import { loadModel } from '../../src/cache/load.ts';
import { BROWN_TINY_DIR, brownTinyAvailable, locatePreset, readTensorFile, REPO_ROOT } from '../helpers/fixtures.ts';
import { expectClose } from '../helpers/compare.ts';
import { getTestDevice, withGpuErrors } from '../helpers/gpu.ts';
import { randn } from '../helpers/random.ts';

describe('MTP layer on the GPU', () => {
  it.runIf(brownTinyAvailable())('brown-tiny: HF\'s golden MTP logits on the three prompts; row by row equals one call (prompt 0)', () =>
    withGpuErrors(async (device) => {
      const model = await Qwen3NextGpuModel.fromCheckpoint(new GpuContext(device), await Checkpoint.open(nodeFileSet(BROWN_TINY_DIR)), { maxContext: 128, maxTokensPerStep: 64, kvCache: 'f32', mtp: true });
      const mtp = model.mtp!, H = model.config.hiddenSize, V = model.config.vocabSize;
      const golden = await readTensorFile(join(BROWN_TINY_DIR, 'golden-mtp/golden-mtp.safetensors'));
      const prompts = await readTensorFile(join(BROWN_TINY_DIR, 'golden/golden.safetensors'));
      const stated = JSON.parse(readFileSync(join(BROWN_TINY_DIR, 'golden-mtp/golden-mtp.json'), 'utf8')).golden_greedy_acceptance;
      let hits = 0, drafts = 0, accepted = 0, drafted = 0;
      for (const p of ['prompt0', 'prompt1', 'prompt2']) {
        const ids = Array.from(golden.get(`${p}.ids`)!.data), T = ids.length - 1;
        const hidden = (golden.get(`${p}.main_hidden`)!.data as Float32Array).subarray(0, T * H);
        const logits = await mtp.forward(ids.slice(1), hidden, 0);
        const d = expectClose(`${p} mtp logits`, logits, golden.get(`${p}.mtp_logits`)!.data, { maxAbs: 1e-3 });
        console.log(`[mtp gpu] brown-tiny ${p}: ${T} rows, max abs ${d.maxAbs.toExponential(2)} from HF's`);
        // teacher-forced 1-draft acceptance on HF's greedy reply (golden-mtp.json): MTP argmax at t vs the token at t + 2
        const input = Array.from(prompts.get(`${p}.input_ids`)!.data);
        for (let t = input.length - 1; t < T - 1; t++) {
          const row = logits.subarray(t * V, (t + 1) * V);
          drafts++;
          hits += row.indexOf(Math.max(...row)) === ids[t + 2] ? 1 : 0;
        }
        if (p !== 'prompt0') continue; // speculating on one prompt (SwiftShader is slow); the engine test speculates too
        // and speculating with it: the same reply as HF's greedy one
        model.reset();
        const spec = new Qwen3NextSpeculativeDecoder(model, { draftTokens: 1, minAcceptance: 0 }), reply: number[] = [];
        for await (const id of generate(model, input, { max_new_tokens: ids.length - input.length }, undefined, spec)) reply.push(id);
        expect(reply).toEqual(ids.slice(input.length));
        accepted += spec.stats.accepted;
        drafted += spec.stats.drafted;
        // row by row, the first 8 rows: a row a submit is slow on SwiftShader
        const R = Math.min(T, 8), rows = new Float32Array(R * V);
        for (let t = 0; t < R; t++) rows.set(await mtp.forward([ids[t + 1]], hidden.subarray(t * H, (t + 1) * H), t), t * V);
        expectClose(`${p} row by row`, rows, logits.subarray(0, R * V), { maxAbs: 1e-4 });
      }
      expect([hits, drafts]).toEqual([Math.round(stated.rate * stated.drafts), stated.drafts]);
      console.log(`[mtp gpu] brown-tiny teacher-forced 1-draft acceptance ${hits}/${drafts} (golden-mtp.json: ${stated.rate}); speculating on prompt 0: ${accepted}/${drafted} drafts accepted`);
    }));

  for (const name of ['tiny', 'asym'] as const) {
    it(`${name}: random mtp.* equal the CPU reference over a prefill of 9 rows and 3 single rows`, () =>
      withGpuErrors(async (device) => {
        const ckpt = await locatePreset(name)!.openCheckpoint(), H = ckpt.config.hiddenSize, V = ckpt.config.vocabSize;
        const model = await Qwen3NextGpuModel.fromCheckpoint(new GpuContext(device), ckpt, { maxContext: 32, maxTokensPerStep: 16, kvCache: 'f32', mtp: true });
        const ref = new Qwen3NextMultiTokenPredictor(new Qwen3NextForCausalLM(await loadWeights(ckpt)), (await loadMtpWeights(ckpt))!);
        const cache = ref.newCache(), ids = [5, 17, 42, 99, 3, 250, 7, 11, 64, 300, 2, 8], hidden = randn(ids.length * H, 3);
        for (const [a, b] of [[0, 9], [9, 10], [10, 11], [11, 12]]) {
          const got = await model.mtp!.forward(ids.slice(a, b), hidden.subarray(a * H, b * H), a);
          expectClose(`rows ${a}..${b - 1}`, got, ref.forward(ids.slice(a, b), hidden.subarray(a * H, b * H), cache), { maxAbs: 1e-3, rel: 2e-4 });
          expect(got.length).toBe((b - a) * V);
        }
      }));
  }

  it('the packed brown-tiny-q4 loads its MTP layer (int4) only when asked; without mtp.* there is none', () =>
    withGpuErrors(async (device) => {
      const store = await NodeFileStore.open(join(REPO_ROOT, 'public/models/brown-tiny-q4'));
      try {
        const src = await storeSource(store);
        expect(src.mtp).toBe(true);
        const ctx = new GpuContext(device);
        expect((await loadModel(ctx, src, { maxContext: 16, maxTokensPerStep: 4 })).mtp).toBeUndefined();
        const m = await loadModel(ctx, src, { maxContext: 16, maxTokensPerStep: 4, mtp: true });
        const logits = await m.mtp!.forward([5, 6], new Float32Array(2 * m.config.hiddenSize).fill(0.1), 0);
        expect(logits.length).toBe(2 * m.config.vocabSize);
        expect(logits.every(Number.isFinite)).toBe(true);
      } finally {
        await store.close();
      }
      const yarn = await Qwen3NextGpuModel.fromCheckpoint(new GpuContext(await getTestDevice()), await locatePreset('yarn')!.openCheckpoint(), { maxContext: 16, maxTokensPerStep: 4, mtp: true });
      expect(yarn.mtp).toBeUndefined();
    }));
});
