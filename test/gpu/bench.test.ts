// The benchmark suites at toy shapes on SwiftShader: they must keep running (a guard against rot, not a speed test).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runBench, markdown } from '../../bench/bench.ts';
import { runEndToEnd } from '../../bench/e2e.ts';
import { runStreaming } from '../../bench/stream.ts';
import { runAblation } from '../../bench/ablate.ts';
import { runSpeculativeBench } from '../../bench/spec.ts';
import { GpuContext } from '../../src/gpu/context.ts';
import { requestNodeDevice } from '../../src/gpu/node-device.ts';
import { withGpuErrors } from '../helpers/gpu.ts';

describe('benchmark suites (tiny shapes)', () => {
  it('kernels: every ceiling and kernel with finite timings', { timeout: 300_000 }, async () => {
    const rows = await runBench('tiny', 1);
    expect(rows.length).toBeGreaterThanOrEqual(19);
    for (const fused of ['+ conv epilogue, T=1', 'GDN fused step (prep + recurrent) T=1']) expect(rows.some((r) => r.name.includes(fused)), fused).toBe(true);
    for (const r of rows) expect(Number.isFinite(r.ms) && r.ms > 0, `${r.name}: ${r.ms} ms`).toBe(true);
    expect(markdown(rows).split('\n')).toHaveLength(rows.length + 2);
  });

  it('ablation: every variant with a finite time', { timeout: 300_000 }, () =>
    withGpuErrors(async (device) => {
      const table = await runAblation(new GpuContext(device), 1, 'tiny');
      const rows = table.split('\n').slice(2);
      expect(rows.length).toBeGreaterThanOrEqual(20);
      for (const r of rows) expect(Number(r.split('|')[2]), r).toBeGreaterThan(0);
    }));

  it('speculative decoding: plain, then oracle, random and MTP drafts for k = 1..3, each reply the plain one', { timeout: 300_000 }, () =>
    withGpuErrors(async (device) => {
      const table = await runSpeculativeBench(new GpuContext(device), { layers: 2, small: true, context: 40, tokens: 4, reps: 1 });
      const rows = table.split('\n').slice(3);
      expect(rows).toHaveLength(2 + 3 * 4);
      expect(table).not.toContain('differs');
      for (const r of rows) expect(Number(r.split('|')[3]), r).toBeGreaterThan(0);
      expect(rows.filter((r) => r.includes('oracle |')).map((r) => r.split('|')[4].trim())).toEqual(['2/2', '2/2', '3/3']); // 4 tokens in rounds of k + 1, the last round drafting only what is left
    }));

  it('end to end (resident) and streaming under a cap, with the telemetry they report', { timeout: 300_000 }, () =>
    withGpuErrors(async (device) => {
      const ctx = new GpuContext(device);
      const e2e = await runEndToEnd(ctx, { layers: 4, small: true, prefillT: 65, contexts: [70], decodeTokens: 2, reps: 1, profile: { readGBs: 1, reps: 1 } });
      expect(e2e.rows.map((r) => r.name)).toEqual(['prefill 65 tokens', "prefill: CPU build of a step's op list", 'prefill: one step of 65 at position 0', 'decode at 70 context', 'decode at 70 context, one step ahead (engine)', 'decode at 70: CPU encode + submit only',
        'decode at 70: back to back, no readback', 'decode at 70: CPU encode, GPU idle', 'decode at 70: CPU submit, GPU idle']);
      // the per-kernel profile covers every dispatch of the token (the decode list and the sampler)
      const [{ profile }] = e2e.profiles;
      expect(profile.rows.reduce((n, r) => n + r.dispatches, 0)).toBe(profile.dispatches);
      // and the prefill step's, every GEMM with its FLOPs
      const pre = e2e.prefillProfile!;
      expect(pre.rows.reduce((n, r) => n + r.dispatches, 0)).toBe(pre.dispatches);
      expect(profile.dispatches).toBe(1 + 3 * 6 + 7 + 1 + 2); // embed, 3 GDN layers, 1 attention layer, lm_head, argmax
      for (const r of profile.rows) expect(r.usEach).toBeGreaterThan(0);
      for (const r of e2e.rows) expect(r.perSecond).toBeGreaterThan(0);
      expect(e2e.gpuBytes).toBeGreaterThan(0);

      const dir = mkdtempSync(join(tmpdir(), 'q3n-bench-'));
      try {
        const s = await runStreaming(ctx, {
          layers: 4, small: true, dir, gpuCapBytes: 0, ramCacheBytes: 1 << 16, promptTokens: 3, decodeTokens: 3,
          zipfS: 1, reuse: 0.5, prefetchAccuracy: 1,
          runs: [{ trace: 'uniform', upload: 'writeBuffer', prefetch: true }, { trace: 'calibrated', upload: 'staging-ring', prefetch: true }, { trace: 'router', upload: 'staging-ring', prefetch: true, cacheAware: 1 }],
        });
        expect(s.rows.map((r) => r.run)).toEqual(['uniform, writeBuffer, prefetch on', 'calibrated, staging-ring, prefetch on', 'router, cache-aware (keeps 1), staging-ring, prefetch on']);
        for (const r of s.rows) {
          expect(r.slotsPerLayer).toBe(4); // top_k + 2 of 8: the cap of 0 forces the minimum
          expect(r.hitRate).toBeGreaterThanOrEqual(0);
          expect(r.hitRate).toBeLessThan(1); // 4 of 8 slots: some misses must happen
          expect(r.mbUploadedPerToken).toBeGreaterThan(0);
          if (!r.run.startsWith('router')) expect(r.prefetchAccuracy).toBe(1); // the simulated predictor is exact at accuracy 1
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }));
});
