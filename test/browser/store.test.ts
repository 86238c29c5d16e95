// The IndexedDB model store in Chromium (src/store/browser.ts): brown-tiny-q4, served by Vite at
// /models/brown-tiny-q4/, downloads with progress; a download cut off mid-way (Playwright aborts every record
// request after the first CUT) resumes on a reloaded page without fetching any complete record twice; the stored
// records re-verify; and the model runs from IndexedDB with the Node logits (resident and streaming experts).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { Qwen3NextGpuModel } from '../../src/model/model.ts';
import { NodeFileStore } from '../../src/store/node.ts';
import { storeSource } from '../../src/store/store.ts';
import { expertLayout } from '../../src/format/pack.ts';
import { manifestConfig, parseManifest } from '../../src/store/manifest.ts';
import { browserSkipReason, startBrowser, type BrowserSession } from '../helpers/browser.ts';
import { expectClose } from '../helpers/compare.ts';
import { REPO_ROOT } from '../helpers/fixtures.ts';
import { getTestDevice } from '../helpers/gpu.ts';

const DIR = join(REPO_ROOT, 'public/models/brown-tiny-q4');
const skip = browserSkipReason() ?? (existsSync(join(DIR, 'manifest.json')) ? null : 'public/models/brown-tiny-q4 is absent');
const CUT = 30; // record requests let through before the connection "drops"
const PROMPT = [12, 845, 33, 1021, 7];

describe.skipIf(skip)('IndexedDB model store (chromium)', () => {
  let session: BrowserSession;
  beforeAll(async () => {
    session = await startBrowser();
  });
  afterAll(() => session?.close());

  it('saved sessions: stored, listed newest first with sizes, renamed, read back, kept across a reload, deleted', async () => {
    const context = await session.browser.newContext({ baseURL: session.baseURL }); // one profile: IndexedDB survives the reload
    const open = async () => {
      const page = await context.newPage();
      await page.goto('/test/browser/pages/store.html');
      await page.waitForFunction(() => 'storeTest' in window);
      return page;
    };
    try {
      let page = await open();
      const { list, same } = await page.evaluate(() => window.storeTest.storeSessions());
      expect(same).toBe(true);
      expect(list.map((s) => [s.id, s.title, s.bytes])).toEqual([['chat-b', 'second', 1000], ['chat-a', 'first, renamed', 5]]);
      expect(list[1].meta).toEqual({ model: '/models/brown-tiny-q4/' });
      await page.close();
      page = await open();
      const r = await page.evaluate(() => window.storeTest.sessionsAfterReload());
      expect(r.before.map((s) => s.id)).toEqual(['chat-b', 'chat-a']);
      expect(r.after.map((s) => s.id)).toEqual(['chat-a']);
      expect(r.missing).toBe(true);
      expect(r.renameMissing).toMatch(/no stored session "chat-b"/);
    } finally {
      await context.close();
    }
  });

  it('downloads with progress, resumes after a dropped connection without refetching, verifies, and runs', { timeout: 240_000 }, async () => {
    const m = parseManifest(readFileSync(join(DIR, 'manifest.json'), 'utf8'));
    const records = m.files.length + m.dense.length + m.experts.flat().length;
    const context = await session.browser.newContext({ baseURL: session.baseURL }); // one profile: IndexedDB survives the reload
    const served = new Map<string, number>(); // record (file + range) -> complete responses
    let recordRequests = 0, cut = true;
    await context.route('**/models/brown-tiny-q4/**', async (route) => {
      const req = route.request(), url = new URL(req.url());
      if (url.pathname.endsWith('/manifest.json')) return route.continue();
      const key = `${url.pathname} ${req.headers()['range'] ?? 'all'}`;
      if (cut && ++recordRequests > CUT) return route.abort('connectionreset');
      const res = await route.fetch();
      served.set(key, (served.get(key) ?? 0) + 1);
      return route.fulfill({ response: res });
    });
    const errors: string[] = [];
    const open = async () => {
      const page = await context.newPage();
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto('/test/browser/pages/store.html');
      await page.waitForFunction(() => 'storeTest' in window);
      return page;
    };

    let page = await open();
    const q = await page.evaluate(() => window.storeTest.quota(5000));
    expect(q).toEqual({ name: 'QuotaExceededError', needed: m.files.reduce((n, f) => n + f.bytes, 0) + m.dense.reduce((n, d) => n + d.bytes, 0) + m.experts.flat().reduce((n, r) => n + r.bytes, 0), available: 5000 });
    expect(served.size, 'nothing fetched when the quota is short').toBe(0);
    const first = await page.evaluate(() => window.storeTest.download());
    expect(first.ok, 'the cut-off download must fail').toBe(false);
    const partial = (await page.evaluate(() => window.storeTest.progress()))!;
    expect(partial.total).toBe(records);
    expect(partial.stored).toBeGreaterThan(0);
    expect(partial.stored).toBeLessThan(records);
    await page.close(); // "reload": a fresh page of the same profile

    cut = false;
    page = await open();
    const second = await page.evaluate(() => window.storeTest.download());
    expect(second.error).toBeUndefined();
    expect(second.ok).toBe(true);
    expect(second.bad).toEqual([]);
    const ev = second.events, last = ev[ev.length - 1];
    expect(ev[0].recordsDone).toBe(partial.stored); // resumed where it stopped
    expect(last).toMatchObject({ recordsDone: records, recordsTotal: records, bytesDone: last.bytesTotal });
    expect(last.bytesPerSecond).toBeGreaterThan(0);
    const twice = [...served].filter(([, n]) => n > 1);
    expect(twice, 'records fetched twice').toEqual([]);
    expect(served.size).toBe(records);
    console.log(`[store] ${records} records, ${partial.stored} stored before the cut, ${ev.length} progress events; last: ${JSON.stringify(last)}`);

    // The model from IndexedDB equals the Node run on the packed folder.
    const store = await NodeFileStore.open(DIR);
    const src = await storeSource(store);
    const node = await Qwen3NextGpuModel.load(new GpuContext(await getTestDevice()), src, { maxContext: 64, maxTokensPerStep: 16 });
    const want = await node.forward(PROMPT, { logits: 'all' });
    await store.close();
    const resident = await page.evaluate((ids) => window.storeTest.logits(ids), PROMPT);
    expectClose('IndexedDB model logits', resident.logits, want, { maxAbs: 1e-4 });
    const c = manifestConfig(m), quarter = Math.floor((c.numLayers * c.numExperts * expertLayout(c, m.quant.experts).words * 4) / 4);
    const streaming = await page.evaluate(([ids, bytes]) => window.storeTest.logits(ids as number[], bytes as number), [PROMPT, quarter] as const);
    expectClose('IndexedDB streaming logits', streaming.logits, want, { maxAbs: 1e-4 });
    // Same browser, same kernels: streaming 25% of the experts changes which slot holds an expert, not the math.
    expectClose('streaming vs fully resident, both in Chromium', streaming.logits, resident.logits, { maxAbs: 1e-5 });
    expect(streaming.stats!.totals.misses).toBeGreaterThan(0);
    console.log(`[store] streaming from IndexedDB at 25%: ${JSON.stringify({ ...streaming.stats!.totals })}`);
    expect(errors).toEqual([]);
    await context.close();
  });
});
