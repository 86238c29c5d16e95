// The routing traces of the streaming benchmark (bench/traces.ts): the 'calibrated' one holds the published LRU hit
// rates of real routers on Qwen3-Next's shape (512 experts, top-10: ~67% at 64 slots a layer, ~81% at 128) within 3
// points, and the others sit where they should around it (uniform: slots / E; zipf: the earlier assumption).
import { describe, expect, it } from 'vitest';
import { lruHitRate, makeTrace, reuseDistances } from '../../bench/traces.ts';

const E = 512, k = 10, L = 4, WARM = 200, TOKENS = 1200;
const trace = (kind: 'uniform' | 'zipf' | 'calibrated', seed = 1) => makeTrace(kind, L, E, k, { zipfS: 1, reuse: 0.5 }, seed);

describe('routing traces', () => {
  it('calibrated: per-layer LRU hit rate 67 +- 3 % at 64 slots and 81 +- 3 % at 128, on two seeds', () => {
    for (const seed of [1, 2]) {
      const t = trace('calibrated', seed);
      const [at64, at128] = [lruHitRate(t, L, WARM, TOKENS, 64), lruHitRate(t, L, WARM, TOKENS, 128)];
      console.log(`[traces] calibrated, seed ${seed}: LRU hit ${(100 * at64).toFixed(1)} % at 64 slots, ${(100 * at128).toFixed(1)} % at 128`);
      expect(Math.abs(at64 - 0.67)).toBeLessThan(0.03);
      expect(Math.abs(at128 - 0.81)).toBeLessThan(0.03);
      const r = reuseDistances(t, L, WARM, TOKENS);
      expect(r.next).toBeGreaterThan(0.35); // 45% on the published 128-expert top-8 model
      expect(r.within8).toBeGreaterThan(r.next);
    }
  });

  it('every token has k distinct experts in range; the trace is the same for the same seed', () => {
    for (const kind of ['uniform', 'zipf', 'calibrated'] as const) {
      const a = trace(kind), b = trace(kind);
      for (let t = 0; t < 50; t++) {
        for (let l = 0; l < L; l++) {
          const x = a(t, l);
          expect(new Set(x).size, kind).toBe(k);
          expect(x.every((e) => Number.isInteger(e) && e >= 0 && e < E), kind).toBe(true);
          expect(b(t, l)).toEqual(x);
        }
      }
    }
  });

  it('uniform hits slots / E and nothing better; the calibrated trace needs more slots than the zipf assumption', () => {
    const u = lruHitRate(trace('uniform'), L, WARM, TOKENS, 128);
    expect(Math.abs(u - 128 / E)).toBeLessThan(0.02);
    expect(lruHitRate(trace('calibrated'), L, WARM, TOKENS, 32)).toBeLessThan(lruHitRate(trace('zipf'), L, WARM, TOKENS, 32));
  });
});
