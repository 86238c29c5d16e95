// The expert cache's CPU policy: per-layer LRU with the sub-batch's experts pinned, sub-batch planning,
// cache-aware routing and the RAM tier.
import { describe, expect, it } from 'vitest';
import { addRouterProbabilities, cacheAwareRoute, defaultRamCacheBytes, planSubBatches, RamTier, SlotTable } from '../../src/cache/policy.ts';
import { Limiter, moveFirst } from '../../src/store/browser.ts';
import { routeTopK } from '../../src/reference/ops.ts';

describe('SlotTable (LRU, pinned sub-batch)', () => {
  it('fills free slots first, then evicts the least recently used', () => {
    const t = new SlotTable(10, 3);
    expect(t.assign([1, 2, 3]).map((m) => m.slot)).toEqual([0, 1, 2]);
    expect(t.assign([2])).toEqual([]); // hit: 2 becomes most recent; 1 is now the LRU
    expect(t.assign([3])).toEqual([]);
    expect(t.assign([4])).toEqual([{ expert: 4, slot: 0 }]); // evicts 1
    expect(t.slotOf[1]).toBe(-1);
    expect(t.slotOf[4]).toBe(0);
    expect(t.evictions).toBe(1);
    expect(Array.from(t.gpuTable())).toEqual([0, 0, 1, 2, 0, 0, 0, 0, 0, 0]);
  });

  it('never evicts an expert the same sub-batch needs', () => {
    const t = new SlotTable(10, 3);
    t.assign([1]);
    t.assign([2]);
    t.assign([3]); // LRU order 1, 2, 3
    // 1 is the LRU but pinned by this sub-batch: 5 and 6 must take 2's and 3's slots.
    const moves = t.assign([1, 5, 6]);
    expect(moves.map((m) => m.expert)).toEqual([5, 6]);
    expect(t.slotOf[1]).toBe(0);
    expect(new Set(t.expertIn)).toEqual(new Set([1, 5, 6]));
  });

  it('refuses a sub-batch larger than the slots', () => {
    expect(() => new SlotTable(10, 2).assign([1, 2, 3])).toThrow(RangeError);
  });
});

describe('planSubBatches', () => {
  it('cuts contiguous runs whose expert union fits the slots', () => {
    // k = 2, 4 slots: tokens {0,1} {1,2} {3,4} {4,5} {0,1}
    const idx = Uint32Array.from([0, 1, 1, 2, 3, 4, 4, 5, 0, 1]);
    const runs = planSubBatches(idx, 5, 2, 4);
    expect(runs.map((r) => [r.start, r.end])).toEqual([[0, 2], [2, 4], [4, 5]]);
    expect(runs.map((r) => new Set(r.experts))).toEqual([new Set([0, 1, 2]), new Set([3, 4, 5]), new Set([0, 1])]);
  });

  it('keeps a step whose experts fit as one run', () => {
    const runs = planSubBatches(Uint32Array.from([3, 1, 1, 3]), 2, 2, 2);
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ start: 0, end: 2 });
  });
});

describe('cacheAwareRoute', () => {
  // E = 8, k = 4; logits (E + 1 with the shared gate) of two tokens, their top-4 by the reference router
  const E = 8, k = 4, T = 2;
  const logits = Float32Array.from([
    5, 4, 3, 2, 1, 0.5, 0.25, 0, 9, // token 0: 0 1 2 3 | 4 5 6 7
    0, 1, 2, 3, 4, 5, 6, 7, -9, //     token 1: 7 6 5 4 | 3 2 1 0
  ]);
  const routed = () => {
    const rows = Float32Array.from([...logits.subarray(0, E), ...logits.subarray(E + 1, 2 * E + 1)]);
    const { idx, w } = routeTopK(rows, T, E, k, true);
    return { idx: Uint32Array.from(idx), w, logits };
  };

  it('changes nothing when every pick is available, or every unavailable pick is exact', () => {
    for (const [exact, available] of [[2, () => true], [4, (e: number) => e === 7]] as const) {
      const r = routed(), before = { idx: r.idx.slice(), w: r.w.slice() };
      expect(cacheAwareRoute(r, T, E, k, true, exact, available)).toBe(0);
      expect(r).toMatchObject(before);
    }
  });

  it('keeps the exact picks, replaces the others not available by the best available ones, weights as the router', () => {
    const resident = new Set([0, 1, 5, 6, 7, 2]);
    const r = routed(), w1 = r.w.slice(k); // token 1: 7 6 | 5 4 -> 4 is not resident
    expect(cacheAwareRoute(r, T, E, k, true, 2, (e) => resident.has(e))).toBe(2); // token 0: 3 -> 5; token 1: 4 -> 2
    expect(Array.from(r.idx)).toEqual([0, 1, 2, 5, 7, 6, 5, 2]);
    // each replaced row's weights: the reference router's softmax of the final four, renormalised
    for (const [t, picks] of [[0, [0, 1, 2, 5]], [1, [7, 6, 5, 2]]] as const) {
      const row = logits.subarray(t * (E + 1), t * (E + 1) + E), p = picks.map((e) => Math.exp(row[e]));
      const sum = p.reduce((a, b) => a + b);
      expect(Array.from(r.w.subarray(t * k, t * k + k))).toEqual(p.map((x) => expect.closeTo(x / sum, 6)));
    }
    expect(r.w.subarray(k)).not.toEqual(w1);
    const n = routed();
    cacheAwareRoute(n, T, E, k, false, 2, (e) => resident.has(e)); // without norm_topk_prob: the plain probabilities
    const all = Array.from(logits.subarray(0, E), Math.exp).reduce((a, b) => a + b);
    expect(n.w[3]).toBeCloseTo(Math.exp(0.5) / all, 6);
  });

  it('leaves a pick when no available expert is left', () => {
    const r = routed(); // token 0: 2 -> 6, and 3 stays (0, 1, 6 taken); token 1: 5 -> 1, 4 -> 0 (by logit)
    expect(cacheAwareRoute(r, T, E, k, true, 1, (e) => e === 0 || e === 1 || e === 6)).toBe(3);
    expect(Array.from(r.idx)).toEqual([0, 1, 6, 3, 7, 6, 1, 0]);
  });
});

describe('the fill by router mass', () => {
  it('addRouterProbabilities sums each row\'s softmax over the experts, not the shared gate', () => {
    const mass = new Float64Array(3);
    addRouterProbabilities(mass, Float32Array.from([0, 0, 0, 50, Math.log(2), 0, 0, -50]));
    expect(Array.from(mass)).toEqual([1 / 3 + 1 / 2, 1 / 3 + 1 / 4, 1 / 3 + 1 / 4].map((x) => expect.closeTo(x, 6)));
  });

  it('moveFirst brings the highest priority forward, the rest in their order; all equal: unchanged', () => {
    const list = [0, 1, 2, 3, 4].map((e) => ({ layer: e % 2, expert: e }));
    moveFirst(list, 0, () => 0);
    expect(list.map((r) => r.expert)).toEqual([0, 1, 2, 3, 4]);
    moveFirst(list, 1, (l, e) => (e === 3 ? 5 : e === 4 ? 5 : 1));
    expect(list.map((r) => r.expert)).toEqual([0, 3, 1, 2, 4]); // from 1 on: 3 first (ties: the first)
    moveFirst(list, 2, (l) => l); // layer 1 first: expert 1 (already at 2)
    expect(list.map((r) => r.expert)).toEqual([0, 3, 1, 2, 4]);
  });
});

describe('Limiter (expert fetches in flight)', () => {
  it('runs at most max tasks at once, the rest in order, passing a failed task\'s slot on', async () => {
    const lim = new Limiter(2), started: number[] = [], release: (() => void)[] = [];
    let active = 0, most = 0;
    const task = (i: number) => lim.run(async () => {
      started.push(i);
      most = Math.max(most, ++active);
      await new Promise<void>((r) => release.push(r));
      active--;
      if (i === 1) throw new Error('offline');
      return i;
    });
    const all = [0, 1, 2, 3, 4].map((i) => task(i).catch((e: Error) => e.message));
    for (let n = 0; n < 5; n++) {
      await new Promise((r) => setTimeout(r, 0));
      release.shift()!();
    }
    expect(await Promise.all(all)).toEqual([0, 'offline', 2, 3, 4]);
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect(most).toBe(2);
  });
});

describe('RamTier', () => {
  it('drops the least recently used records over its budget and remembers prefetches once', () => {
    const r = new RamTier(8 * 4);
    r.put('a', new Uint32Array(4), true);
    r.put('b', new Uint32Array(4));
    expect(r.take('a')).toMatchObject({ prefetched: true }); // a is now the most recent
    expect(r.take('a')).toMatchObject({ prefetched: false });
    r.put('c', new Uint32Array(4)); // over budget: b goes
    expect(r.has('b')).toBe(false);
    expect(r.has('a') && r.has('c')).toBe(true);
    expect(r.bytes).toBe(32);
  });
});

describe('defaultRamCacheBytes', () => {
  it('an eighth of navigator.deviceMemory, 128 MiB to 1 GiB; 256 MiB where the browser does not say', () => {
    const MiB = 2 ** 20;
    expect([8, 4, 2, 1, 0.5, 0.25, 32].map((g) => defaultRamCacheBytes(g) / MiB)).toEqual([1024, 512, 256, 128, 128, 128, 1024]);
    for (const unknown of [undefined, 0, NaN, -1]) expect(defaultRamCacheBytes(unknown)).toBe(256 * MiB);
  });
});
