// The benchmark suite at toy shapes on SwiftShader: it must keep running (a guard against rot, not a speed test).
import { describe, expect, it } from 'vitest';
import { runBench, markdown } from '../../bench/bench.ts';

describe('benchmark suite (tiny shapes)', () => {
  it('measures every ceiling and kernel with finite timings', { timeout: 300_000 }, async () => {
    const rows = await runBench('tiny', 1);
    expect(rows.length).toBeGreaterThanOrEqual(17);
    for (const r of rows) expect(Number.isFinite(r.ms) && r.ms > 0, `${r.name}: ${r.ms} ms`).toBe(true);
    expect(markdown(rows).split('\n')).toHaveLength(rows.length + 2);
  });
});
