// WebGPU in a real browser: Debian's chromium (headless, through playwright-core) runs one of our kernels, zero-centred
// RMSNorm, in a page and in a dedicated module worker, against the CPU oracle computed in the same page.
// The page is test/browser/pages/smoke.html, served by Vite (test/helpers/browser.ts).
import { describe, expect, it } from 'vitest';
import { browserSkipReason, usePage } from '../helpers/browser.ts';
import { expectClose } from '../helpers/compare.ts';
import type { CaseResult } from './pages/rmsnorm-case.ts';

const skip = browserSkipReason();

describe.skipIf(skip)('browser WebGPU smoke (chromium)', () => {
  const pg = usePage('/test/browser/pages/smoke.html', 'smoke');

  const expectCase = (label: string, r: CaseResult) => {
    pg.tp.check();
    expect(r.gpuErrors, `${label}: GPU errors`).toEqual([]);
    expectClose(label, r.gpu, r.ref, { rel: 1e-5 });
  };

  it('has a WebGPU adapter', async () => {
    const info = await pg.tp.page.evaluate(() => window.smoke.adapter());
    console.log(`[browser] WebGPU adapter: ${JSON.stringify(info)}`);
    expect(info.vendor).not.toBe('');
    pg.tp.check();
  });

  for (const [rows, D] of [[7, 48], [3, 2048]]) {
    it(`page: zero-centred RMSNorm rows=${rows} D=${D}`, async () => {
      expectCase('page rmsnorm', await pg.tp.page.evaluate(([r, d]) => window.smoke.page(r, d), [rows, D]));
    });
    it(`module worker: zero-centred RMSNorm rows=${rows} D=${D}`, async () => {
      expectCase('worker rmsnorm', await pg.tp.page.evaluate(([r, d]) => window.smoke.worker(r, d), [rows, D]));
    });
  }

  for (const where of ['page', 'worker'] as const) {
    it(`fails on an uncaptured GPU error in the ${where}`, async () => {
      await pg.tp.page.evaluate((w) => window.smoke.provokeGpuError(w), where);
      await expect.poll(() => pg.tp.errors.length).toBeGreaterThan(0);
      expect(() => pg.tp.check()).toThrow(/webgpu uncaptured/);
    });
  }

  it('fails on a console error', async () => {
    await pg.tp.page.evaluate(() => console.error('deliberate'));
    await expect.poll(() => pg.tp.errors.length).toBeGreaterThan(0);
    expect(() => pg.tp.check()).toThrow(/deliberate/);
  });
});
