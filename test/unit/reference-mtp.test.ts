// The CPU reference of the MTP layer (src/reference/mtp.ts, from vLLM's Qwen3NextMultiTokenPredictor) on
// brown-tiny's trained mtp.* against the fp32 logits HF's modules computed from the same bf16 weights
// (golden-mtp/golden-mtp.safetensors), and the 1-draft greedy acceptance on the golden replies that
// golden-mtp.json states (0.60: 15 of 25 drafts). Skipped (with a note) when ../shared/models/brown-tiny is absent.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BROWN_TINY_DIR, brownTinyAvailable, locatePreset, readTensorFile, type Tensor } from '../helpers/fixtures.ts';
import { expectClose } from '../helpers/compare.ts';
import { Checkpoint } from '../../src/checkpoint/checkpoint.ts';
import { nodeFileSet } from '../../src/checkpoint/node-files.ts';
import { Qwen3NextForCausalLM, recordTaps } from '../../src/reference/model.ts';
import { Qwen3NextMultiTokenPredictor } from '../../src/reference/mtp.ts';
import { loadMtpWeights, loadWeights } from '../../src/reference/weights.ts';

const argmaxRows = (x: Float32Array, V: number) => Array.from({ length: x.length / V }, (_, t) => {
  const row = x.subarray(t * V, (t + 1) * V);
  return row.indexOf(Math.max(...row));
});

describe.runIf(brownTinyAvailable())('reference MTP layer, brown-tiny (bf16 checkpoint)', () => {
  let main: Qwen3NextForCausalLM, mtp: Qwen3NextMultiTokenPredictor;
  let golden: Map<string, Tensor>, prompts: Map<string, Tensor>;
  beforeAll(async () => {
    const ckpt = await Checkpoint.open(nodeFileSet(BROWN_TINY_DIR));
    main = await Qwen3NextForCausalLM.load(ckpt);
    mtp = new Qwen3NextMultiTokenPredictor(main, (await loadMtpWeights(ckpt))!);
    golden = await readTensorFile(join(BROWN_TINY_DIR, 'golden-mtp/golden-mtp.safetensors'));
    prompts = await readTensorFile(join(BROWN_TINY_DIR, 'golden/golden.safetensors'));
  });

  let hits = 0, drafts = 0;
  for (const p of ['prompt0', 'prompt1', 'prompt2']) {
    it(`${p}: the main model's hidden states, then MTP logits equal HF's; one row at a time equals the whole call`, () => {
      const ids = Array.from(golden.get(`${p}.ids`)!.data), T = ids.length, H = main.config.hiddenSize, V = main.config.vocabSize;
      const taps = recordTaps();
      main.forward(ids, main.newCache(), { tap: taps.tap });
      const hidden = golden.get(`${p}.main_hidden`)!.data as Float32Array;
      expectClose(`${p} main_hidden`, taps.get('final_hidden'), hidden, { maxAbs: 1e-3 });
      // row t: the hidden state at t and the token at t + 1 predict the token at t + 2
      const logits = mtp.forward(ids.slice(1), hidden.subarray(0, (T - 1) * H), mtp.newCache());
      const d = expectClose(`${p} mtp_logits`, logits, golden.get(`${p}.mtp_logits`)!.data, { maxAbs: 1e-4 });
      console.log(`[mtp] brown-tiny ${p}: T ${T - 1}, max abs ${d.maxAbs.toExponential(2)}, rel ${d.rel.toExponential(2)}`);
      const cache = mtp.newCache(), rows = new Float32Array(logits.length);
      for (let t = 0; t < T - 1; t++) rows.set(mtp.forward([ids[t + 1]], hidden.subarray(t * H, (t + 1) * H), cache), t * V);
      expectClose(`${p} row by row`, rows, logits, { maxAbs: 1e-5 });
      // drafts for reply tokens 2.. (train_mtp.py): the MTP argmax at t against the main model's greedy token t + 2
      const draft = argmaxRows(logits, V), start = prompts.get(`${p}.input_ids`)!.data.length - 1;
      for (let t = start; t < T - 2; t++) { drafts++; hits += draft[t] === ids[t + 2] ? 1 : 0; }
    });
  }

  it('1-draft greedy acceptance on the golden replies: golden-mtp.json\'s', () => {
    const stated = JSON.parse(readFileSync(join(BROWN_TINY_DIR, 'golden-mtp/golden-mtp.json'), 'utf8')).golden_greedy_acceptance;
    expect(drafts).toBe(stated.drafts);
    expect(hits / drafts).toBe(stated.rate);
    console.log(`[mtp] brown-tiny 1-draft greedy acceptance ${hits}/${drafts} = ${(hits / drafts).toFixed(2)}`);
  });
});

describe('mtp.* in the fixture presets', () => {
  it('tiny and asym carry random MTP weights the reference loads and runs; yarn has none', async () => {
    for (const name of ['tiny', 'asym'] as const) {
      const ckpt = await locatePreset(name)!.openCheckpoint();
      expect(ckpt.config.numNextnPredictLayers).toBe(1);
      const mtp = new Qwen3NextMultiTokenPredictor(new Qwen3NextForCausalLM(await loadWeights(ckpt)), (await loadMtpWeights(ckpt))!);
      const H = ckpt.config.hiddenSize, logits = mtp.forward([3, 4], new Float32Array(2 * H).fill(0.5), mtp.newCache());
      expect(logits.length).toBe(2 * ckpt.config.vocabSize);
      expect(logits.every(Number.isFinite)).toBe(true);
    }
    expect(await loadMtpWeights(await locatePreset('yarn')!.openCheckpoint())).toBeUndefined();
  });
});
