// The quality cost of cache-aware routing (issue #16), on brown-tiny (64 experts, top-10): the CPU reference
// (bf16 weights, so routing is the only approximation) decodes held-out text token by token while per-layer LRU
// slot tables (src/cache/policy.ts SlotTable, as the expert cache keeps them) and cacheAwareRoute (the policy the
// streaming step runs; test/gpu/expert-cache.test.ts shows the GPU runs exactly its picks) rewrite each token's
// routing. Reported per (slots, exact): held-out perplexity, the share of positions whose argmax equals exact
// routing's, free-running greedy agreement (matching prefix of 32 tokens from each golden prompt), and the uploads
// a token needs per layer (misses), against exact routing through the same slots.
//   npx vitest run --config vitest.measure.config.ts bench/cache-aware.measure.ts
import { join } from 'node:path';
import { it } from 'vitest';
import { Checkpoint } from '../src/checkpoint/checkpoint.ts';
import { nodeFileSet } from '../src/checkpoint/node-files.ts';
import { cacheAwareRoute, SlotTable } from '../src/cache/policy.ts';
import { Qwen3NextForCausalLM, type ForwardOptions } from '../src/reference/model.ts';
import { BROWN_TINY_DIR, readTensorFile } from '../test/helpers/fixtures.ts';

const WINDOW = 128, WINDOWS = Number(process.env.WINDOWS ?? 4), FREE = 32;
const SLOTS = [16, 32], EXACT = [10, 7, 5, 3];

it('cache-aware routing on brown-tiny: perplexity, agreement, uploads', async () => {
  const model = await Qwen3NextForCausalLM.load(await Checkpoint.open(nodeFileSet(BROWN_TINY_DIR)));
  const c = model.config, E = c.numExperts, k = c.numExpertsPerTok, V = c.vocabSize;
  const g = await readTensorFile(join(BROWN_TINY_DIR, 'golden/golden.safetensors'));
  const heldout = Array.from(g.get('heldout.ids')!.data), prompts = [0, 1, 2].map((p) => Array.from(g.get(`prompt${p}.input_ids`)!.data));

  /** Routing through per-layer slot tables: `exact` undefined = the router's picks, uploads counted. */
  function router(slots: number, exact: number | undefined) {
    const tables = Array.from({ length: c.numLayers }, () => new SlotTable(E, slots));
    const n = { tokens: 0, misses: 0, replaced: 0 };
    const route: ForwardOptions['route'] = (layer, logits, T, r) => {
      const table = tables[layer], idx = Uint32Array.from(r.idx);
      if (exact !== undefined) {
        const padded = new Float32Array(T * (E + 1)); // policy.ts reads (T, E+1) rows: router | shared gate
        for (let t = 0; t < T; t++) padded.set(logits.subarray(t * E, (t + 1) * E), t * (E + 1));
        const picks = new Set<number>();
        for (let t = 0; t < T; t++) for (let j = 0; j < exact; j++) picks.add(idx[t * k + j]);
        n.replaced += cacheAwareRoute({ idx, w: r.w as Float32Array<ArrayBuffer>, logits: padded }, T, E, k, c.normTopkProb, exact, (e) => table.slotOf[e] >= 0 || picks.has(e));
        r.idx.set(idx);
      }
      for (let t = 0; t < T; t++) n.misses += table.assign(new Set(idx.subarray(t * k, (t + 1) * k))).length;
      if (layer === 0) n.tokens += T;
    };
    return { route, n };
  }

  const argmax = (row: Float32Array) => row.indexOf(Math.max(...row));
  /** Teacher-forced decode over the held-out windows: NLL and each position's argmax. */
  function forced(opts: ForwardOptions) {
    let nll = 0;
    const top: number[] = [];
    for (let w = 0; w < WINDOWS; w++) {
      const cache = model.newCache(), seg = heldout.slice(w * WINDOW, (w + 1) * WINDOW + 1);
      for (let t = 0; t < WINDOW; t++) {
        const row = model.forward([seg[t]], cache, opts);
        const max = Math.max(...row);
        let sum = 0;
        for (const v of row) sum += Math.exp(v - max);
        nll += Math.log(sum) + max - row[seg[t + 1]];
        top.push(argmax(row));
      }
    }
    return { ppl: Math.exp(nll / (WINDOW * WINDOWS)), top };
  }
  /** Free-running greedy replies to the golden prompts (prompt prefilled, then one token a step). */
  function free(opts: ForwardOptions) {
    return prompts.map((p) => {
      const cache = model.newCache(), out = [argmax(model.forward(p, cache, opts).subarray((p.length - 1) * V))];
      while (out.length < FREE) out.push(argmax(model.forward([out[out.length - 1]], cache, opts)));
      return out;
    });
  }

  const rows: string[] = [];
  const base = forced({}), baseFree = free({});
  for (const slots of SLOTS) {
    for (const exact of EXACT) {
      const t0 = performance.now();
      const r = router(slots, exact === k ? undefined : exact);
      const f = forced({ route: r.route }), perToken = r.n.misses / r.n.tokens / c.numLayers;
      const tokens = r.n.tokens, replaced = r.n.replaced;
      const agree = f.top.filter((x, i) => x === base.top[i]).length / base.top.length;
      const prefixes = free({ route: router(slots, exact === k ? undefined : exact).route }).map((reply, p) => {
        let m = 0;
        while (m < FREE && reply[m] === baseFree[p][m]) m++;
        return m;
      });
      rows.push(`| ${slots} / ${E} | ${exact === k ? `${k} (exact routing)` : exact} | ${f.ppl.toFixed(2)} (${((f.ppl / base.ppl - 1) * 100).toFixed(1)}%) | ` +
        `${(agree * 100).toFixed(1)}% | ${prefixes.join(', ')} of ${FREE} | ${perToken.toFixed(2)} | ${(replaced / tokens / c.numLayers).toFixed(2)} | ${((performance.now() - t0) / 1000).toFixed(0)} s |`);
      console.log(rows.at(-1));
    }
  }
  console.log([`brown-tiny (CPU reference, bf16 weights), teacher-forced decode over ${WINDOWS} x ${WINDOW} held-out tokens; exact routing: perplexity ${base.ppl.toFixed(2)}`,
    '| slots a layer | exact picks | perplexity (vs exact) | argmax = exact routing\'s | free-running greedy: same prefix (3 prompts) | uploads a token a layer | picks replaced a token a layer | time |',
    '|---|---|---|---|---|---|---|---|', ...rows].join('\n'));
});
