// The expert cache's CPU policy: per-layer LRU with the sub-batch's experts pinned, sub-batch planning and
// the RAM tier.
import { describe, expect, it } from 'vitest';
import { defaultRamCacheBytes, planSubBatches, RamTier, SlotTable } from '../../src/cache/policy.ts';

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
