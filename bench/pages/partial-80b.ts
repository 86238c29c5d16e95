// Browser side of bench/partial-80b.measure.ts: the store of a packed model at the 80B-A3B record sizes (served by
// the measurement through a simulated line), driven as a conversation would drive it, without the GPU: ready once
// the dense part is stored, then a prompt's routed experts (the calibrated routing trace, bench/traces.ts) read
// layer by layer, fetched on demand when not stored yet, then decode tokens whose expert-cache misses (an LRU of
// `slots` a layer, policy.ts SlotTable) are read the same way, while fill() stores the rest, most-picked first.
import { downloadModel, type IdbModelStore } from '../../src/store/browser.ts';
import { SlotTable } from '../../src/cache/policy.ts';
import { makeTrace } from '../traces.ts';

interface Shape { layers: number; experts: number; k: number; slots: number }
let store: IdbModelStore, shape: Shape, trace: (t: number, l: number) => number[], mass: Float64Array[], tables: SlotTable[];
let t0 = 0, filledAt = 0, stop: AbortController;

const partial80b = {
  /** Page open to ready: the manifest, tokenizer and dense records stored; the fill starts. */
  async load(url: string, s: Shape) {
    shape = s;
    t0 = performance.now();
    store = await downloadModel(url, { experts: 'background' });
    const ready = performance.now() - t0;
    trace = makeTrace('calibrated', s.layers, s.experts, s.k, { zipfS: 0, reuse: 0 }, 1); // the zipf parameters are unused
    mass = Array.from({ length: s.layers }, () => new Float64Array(s.experts));
    tables = Array.from({ length: s.layers }, () => new SlotTable(s.experts, s.slots));
    stop = new AbortController();
    void store.fill({ signal: stop.signal, priority: (l, e) => mass[l]?.[e] ?? 0 }).then(() => (filledAt = performance.now() - t0), () => {});
    return { readyMs: ready };
  },

  /** The prompt's tokens 0..n-1: every layer's experts read (stored or fetched), layer after layer. */
  async prompt(n: number) {
    let experts = 0;
    for (let l = 0; l < shape.layers; l++) {
      const picks = new Set<number>();
      for (let t = 0; t < n; t++) for (const e of trace(t, l)) { picks.add(e); mass[l][e]++; }
      experts += picks.size;
      await Promise.all([...picks].map((e) => store.readExpert(l, e)));
      tables[l].assign(trace(n - 1, l));
    }
    return { firstTokenMs: performance.now() - t0, experts };
  },

  /** Decode tokens from..to-1: each layer's cache misses read; the time of each token. */
  async decode(from: number, to: number) {
    const ms: number[] = [];
    let misses = 0;
    for (let t = from; t < to; t++) {
      const start = performance.now();
      for (let l = 0; l < shape.layers; l++) {
        const picks = trace(t, l);
        for (const e of picks) mass[l][e]++;
        const moves = tables[l].assign(picks);
        misses += moves.length;
        await Promise.all(moves.map((m) => store.readExpert(l, m.expert)));
      }
      ms.push(performance.now() - start);
    }
    return { ms, misses, stored: store.expertsStored };
  },

  async close() {
    stop.abort();
    await store.close();
    return { filledMs: filledAt };
  },
};

declare global {
  interface Window {
    partial80b: typeof partial80b;
  }
}
window.partial80b = partial80b;
