// The CPU reference on brown-tiny, a small trained Qwen3-Next with a sharded bf16 checkpoint, against the
// fp32 golden logits HF computed from the same bf16 weights (golden/golden.safetensors). Tolerance 1e-3
// max abs; cached greedy decoding must reproduce HF's generate() ids. Skipped (with a note) when ../shared/models/brown-tiny is absent.
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BROWN_TINY_DIR, brownTinyAvailable, readTensorFile, type Tensor } from '../helpers/fixtures.ts';
import { expectClose } from '../helpers/compare.ts';
import { Checkpoint } from '../../src/checkpoint/checkpoint.ts';
import { nodeFileSet } from '../../src/checkpoint/node-files.ts';
import { Qwen3NextForCausalLM } from '../../src/reference/model.ts';

describe.runIf(brownTinyAvailable())('reference brown-tiny (bf16 checkpoint)', () => {
  let model: Qwen3NextForCausalLM;
  let golden: Map<string, Tensor>;
  beforeAll(async () => {
    model = await Qwen3NextForCausalLM.load(await Checkpoint.open(nodeFileSet(BROWN_TINY_DIR)));
    golden = await readTensorFile(join(BROWN_TINY_DIR, 'golden/golden.safetensors'));
  });

  for (const prompt of ['prompt0', 'prompt1', 'prompt2']) {
    it(`${prompt}: logits equal HF's fp32 golden logits`, () => {
      const ids = golden.get(`${prompt}.input_ids`)!.data;
      const logits = model.forward(ids, model.newCache());
      const d = expectClose(`brown-tiny ${prompt} logits`, logits, golden.get(`${prompt}.logits`)!.data, { maxAbs: 1e-3 });
      console.log(`brown-tiny ${prompt}: T ${ids.length}, max abs ${d.maxAbs.toExponential(2)}, rel ${d.rel.toExponential(2)}`);
    });

    it(`${prompt}: cached greedy decode reproduces HF generate()`, () => {
      const want = Array.from(golden.get(`${prompt}.greedy_ids`)!.data);
      const V = model.config.vocabSize, cache = model.newCache();
      const argmaxLast = (logits: Float32Array) => {
        const last = logits.subarray(logits.length - V);
        return last.indexOf(Math.max(...last));
      };
      const got = [argmaxLast(model.forward(golden.get(`${prompt}.input_ids`)!.data, cache))];
      while (got.length < want.length) got.push(argmaxLast(model.forward([got[got.length - 1]], cache)));
      expect(got).toEqual(want);
      expect(model.config.eosTokenIds).toContain(got[got.length - 1]);
    });
  }
});
