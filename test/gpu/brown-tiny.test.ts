// brown-tiny (../shared/models/brown-tiny, a small Qwen3-Next trained on English) on the GPU:
//   f32 weights: prompt logits within 1e-3 max abs of HF's golden logits;
//   int4 weights (q4 linear + experts, q8 embed/lm_head): teacher-forced on HF's greedy replies, the int4 argmax
//   equals HF's token wherever the f32 top-1 margin is at least MARGIN logits (brown-tiny has near-ties of
//   0.03-0.2 logits that int4 rounding legitimately flips: REFERENCE.md §8.23); free-running greedy replies are
//   printed for the record (with PPL_WINDOWS=16 or BROWN_TINY_FREE=1); held-out perplexity close to HF's 121.79. CI scores the first 256 held-out tokens
//   with int4 on the GPU and f32 on the CPU reference and requires int4 within 5% of f32 on them (a guard: 256 tokens is a noisy sample,
//   measured +3.1% there against +0.55% over 1,024 tokens; a broken quantizer is off by far more); `PPL_WINDOWS=16 npx vitest run
//   test/gpu/brown-tiny.test.ts` (or `q3n perplexity`, see BENCHMARKS.md) checks all 16 windows of 512 against
//   HF's number (within 2%).
import { describe, expect, it } from 'vitest';
import { Checkpoint } from '../../src/checkpoint/checkpoint.ts';
import { Qwen3NextForCausalLM } from '../../src/reference/model.ts';
import { nodeFileSet } from '../../src/checkpoint/node-files.ts';
import { GpuContext } from '../../src/gpu/context.ts';
import { Qwen3NextGpuModel } from '../../src/model/model.ts';
import { QUANT_F32, QUANT_INT4, type QuantConfig } from '../../src/format/pack.ts';
import { generate } from '../../src/model/generate.ts';
import { meanNll } from '../../src/model/perplexity.ts';
import { BROWN_TINY_DIR, brownTinyAvailable, readTensorFile } from '../helpers/fixtures.ts';
import { getTestDevice, withGpuErrors } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/compare.ts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const WINDOW = 512;
const MARGIN = 0.5; // logits: int4 moves brown-tiny's top-1 margins by up to ~0.4 on these prompts
const WINDOWS = Number(process.env.PPL_WINDOWS ?? 1);
// CI scores the first 256 tokens only (SwiftShader is slow); the full check uses HF's 512-token windows.
const CI_WINDOW = WINDOWS >= 16 ? WINDOW : 256;
const HF_PERPLEXITY = 121.79316116599273; // golden.json heldout.perplexity, 16 windows
const FREE_RUNNING = WINDOWS >= 16 || !!process.env.BROWN_TINY_FREE; // print free-running int4 greedy replies too

/** f32 weights with an f32 K/V cache (HF's numbers), int4 weights with the default f16 one (what the engine runs). */
async function load(quant: QuantConfig) {
  const ckpt = await Checkpoint.open(nodeFileSet(BROWN_TINY_DIR));
  return Qwen3NextGpuModel.fromCheckpoint(new GpuContext(await getTestDevice()), ckpt, { quant, maxContext: 1024, maxTokensPerStep: WINDOW, kvCache: quant === QUANT_F32 ? 'f32' : 'f16' });
}

describe.runIf(brownTinyAvailable())('brown-tiny on the GPU', () => {
  const golden = () => readTensorFile(join(BROWN_TINY_DIR, 'golden/golden.safetensors'));
  const prompts = () => JSON.parse(readFileSync(join(BROWN_TINY_DIR, 'golden/golden.json'), 'utf8')).prompts as unknown[];
  let f32Nll = NaN;
  const f32Margins: number[][] = []; // per prompt, per reply step: HF id's logit minus the best other logit, f32 GPU

  /**
   * Teacher-forced on HF's reply: at each step, (argmax, margin of HF's token over the best other token). `decode`:
   * the reply's tokens run as decode steps (the engine's path); otherwise in one prefill with every row's logits
   * (SwiftShader's time: prompt 0 decodes, the others take the prefill).
   */
  async function forced(model: Qwen3NextGpuModel, input: ArrayLike<number>, reply: number[], decode: boolean) {
    model.reset();
    const V = model.config.vocabSize, rows: Float32Array[] = [];
    if (decode) {
      rows.push(await model.forward(input));
      for (const id of reply.slice(0, -1)) rows.push(await model.forward([id]));
    } else {
      const all = await model.forward([...Array.from(input), ...reply.slice(0, -1)], { logits: 'all' });
      for (let r = 0; r < reply.length; r++) rows.push(all.subarray((input.length - 1 + r) * V, (input.length + r) * V));
    }
    return reply.map((id, r) => {
      const logits = rows[r];
      let argmax = 0, other = -Infinity;
      for (let i = 0; i < logits.length; i++) {
        if (logits[i] > logits[argmax]) argmax = i;
        if (i !== id) other = Math.max(other, logits[i]);
      }
      return { argmax, margin: logits[id] - other };
    });
  }

  it('f32 weights: prompt logits within 1e-3 of HF; greedy replies equal HF; the f32 held-out NLL (CPU reference)', { timeout: 600_000 }, () =>
    withGpuErrors(async () => {
      const model = await load(QUANT_F32);
      const g = await golden();
      for (let p = 0; p < prompts().length; p++) {
        model.reset();
        const logits = await model.forward(g.get(`prompt${p}.input_ids`)!.data, { logits: 'all' });
        expectClose(`prompt${p} logits`, logits, g.get(`prompt${p}.logits`)!.data, { maxAbs: 1e-3 });
        const reply = Array.from(g.get(`prompt${p}.greedy_ids`)!.data);
        const steps = await forced(model, g.get(`prompt${p}.input_ids`)!.data, reply, p === 0);
        expect(steps.map((s) => s.argmax), `prompt${p} f32 greedy`).toEqual(reply);
        f32Margins.push(steps.map((s) => s.margin));
      }
      if (WINDOWS >= 16) return; // the int4 run is compared with HF's own 16-window number
      // The f32 NLL on CI's tokens from the CPU reference (HF's logits within 1e-5; 4 s where SwiftShader takes 50)
      const ref = await Qwen3NextForCausalLM.load(await Checkpoint.open(nodeFileSet(BROWN_TINY_DIR)));
      let cache = ref.newCache();
      const cpu = { config: ref.config, reset: () => { cache = ref.newCache(); }, forward: async (ids: number[]) => ref.forward(ids, cache) };
      f32Nll = await meanNll(cpu, g.get('heldout.ids')!.data, CI_WINDOW, WINDOWS);
      console.log(`[brown-tiny] f32 (CPU reference) perplexity over ${WINDOWS} x ${CI_WINDOW} tokens: ${Math.exp(f32Nll).toFixed(3)}`);
    }));

  it(`int4 weights: HF's greedy tokens wherever the f32 margin >= ${MARGIN}; held-out perplexity close to f32 (HF within 2% over 16 windows)`, { timeout: 600_000 + WINDOWS * 120_000 }, () =>
    withGpuErrors(async () => {
      const model = await load(QUANT_INT4);
      const g = await golden();
      for (let p = 0; p < prompts().length; p++) {
        const input = g.get(`prompt${p}.input_ids`)!.data, reply = Array.from(g.get(`prompt${p}.greedy_ids`)!.data);
        const steps = await forced(model, input, reply, p === 0);
        steps.forEach((s, i) => {
          if (f32Margins[p][i] >= MARGIN) expect(s.argmax, `prompt${p} step ${i} (f32 margin ${f32Margins[p][i].toFixed(2)})`).toBe(reply[i]);
        });
        let agree = '';
        if (FREE_RUNNING) { // only printed, never asserted: off in CI, where 48 more decode steps cost a minute
          model.reset();
          const free: number[] = [];
          for await (const id of generate(model, input, { max_new_tokens: 16, eos_token_id: [2, 0] })) free.push(id);
          let n = 0;
          while (n < reply.length && free[n] === reply[n]) n++;
          agree = `free-running greedy agrees with HF for ${n}/${reply.length} tokens; `;
        }
        console.log(`[brown-tiny] int4 prompt${p}: ${agree}f32 margins ${f32Margins[p].map((m) => m.toFixed(2)).join(' ')}; int4 margins ${steps.map((s) => s.margin.toFixed(2)).join(' ')}`);
      }
      const nll = await meanNll(model, g.get('heldout.ids')!.data, CI_WINDOW, WINDOWS);
      const ppl = Math.exp(nll);
      console.log(`[brown-tiny] int4 GPU perplexity over ${WINDOWS} x ${CI_WINDOW} tokens: ${ppl.toFixed(3)}`);
      if (WINDOWS >= 16) expect(Math.abs(ppl / HF_PERPLEXITY - 1)).toBeLessThanOrEqual(0.02);
      else expect(Math.abs(ppl / Math.exp(f32Nll) - 1), 'int4 vs f32 perplexity on the same tokens').toBeLessThanOrEqual(0.05);
    }));
});
