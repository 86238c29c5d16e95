// Chatting before the download completes (issue #17): createSharedEngine with `cache` and `backgroundExperts` on
// brown-tiny-q4 (576 expert records of 15 KB, 5 MB dense) from the dev server, each profile a fresh IndexedDB.
//  - Ready once the dense part is stored; the reply streams while the background fill is under way (its last record
//    held until the reply ends) and equals the fully stored model's reply; no record is fetched twice; an expert served
//    corrupt once is refused by its hash and fetched again.
//  - The server gone mid-fill: a reply that needs a missing expert fails with ExpertUnavailableError (how much is
//    stored, what to do), or, with unavailableExperts 'substitute', goes on with stored experts in their place; the
//    next visit resumes the fill without fetching any stored record again and replies.
//  - Two tabs of one profile (each with its own engine: the page hides SharedWorker) load the model at once: every
//    record is fetched once in all, both fills end complete.
import type { Route } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { browserSkipReason, startBrowser, usePage } from '../helpers/browser.ts';

const skip = browserSkipReason();
const PROMPT = 'The jury said it did find that many of the voters were not qualified.';
const REPLY = "These weren't it??"; // the fully stored model's reply (engine-cache.test.ts)
const MODEL = '/models/brown-tiny-q4/';
const isExpert = (url: string) => new URL(url).pathname.startsWith(`${MODEL}experts-`);
// The fill's order ends with the MTP layer's last expert, which a reply without speculative decoding never needs.
const LAST_FILLED = `${MODEL}experts-L008.bin bytes=967680-983039`;
const rangeOf = (route: Route) => `${new URL(route.request().url()).pathname} ${route.request().headers()['range']}`;

describe.skipIf(skip)('Engine ready before its experts are stored (chromium)', () => {
  const pg = usePage('/test/browser/pages/engine.html', 'engineTest', (page) => page.evaluate(() => window.engineTest.unload()));

  it('replies while the fill runs, as the fully stored model; no record twice; a corrupt expert fetched again', async () => {
    const context = pg.tp.page.context(), seen = new Map<string, number>();
    let corrupted = '', release = () => {};
    const replied = new Promise<void>((r) => (release = r));
    await context.route(`**${MODEL}**`, async (route) => {
      const range = route.request().headers()['range'];
      if (range) seen.set(rangeOf(route), (seen.get(rangeOf(route)) ?? 0) + 1);
      if (!isExpert(route.request().url())) return route.continue();
      if (!corrupted) { // the first expert asked for comes back damaged, once
        corrupted = rangeOf(route);
        const res = await route.fetch(), body = Buffer.from(await res.body());
        body[7] ^= 0xff;
        return route.fulfill({ response: res, body });
      }
      if (rangeOf(route) === LAST_FILLED) await replied; // the fill's last record waits for the reply: no race
      await new Promise((r) => setTimeout(r, 30)); // a slow line: the reply's experts are fetched on demand
      return route.continue();
    });
    try {
      const load = await pg.tp.page.evaluate((m) => window.engineTest.load(m, true, true), MODEL);
      expect(load.last, 'ready before any expert is stored: no fill report yet, or only its first').toMatch(/ready|fill/);
      expect(load.outOfRange, 'progress within 0..total (the dense download counted only what it fetches)').toEqual([]);
      const reply = await pg.tp.page.evaluate((p) => window.engineTest.stream(p, 16), PROMPT).finally(release);
      expect(reply.text).toBe(REPLY);
      expect(reply.fillAtFirstToken!.loaded, 'the fill was still under way when the reply began').toBeLessThan(reply.fillAtFirstToken!.total);
      const during = await pg.tp.page.evaluate(() => window.engineTest.fillState());
      expect(reply.usage).toHaveProperty('expert_cache'); // streamed through the expert cache meanwhile
      await expect.poll(async () => (await pg.tp.page.evaluate(() => window.engineTest.fillState())).last?.loaded, { timeout: 60_000, interval: 500 }).toBe(during.last!.total);
      expect(seen.get(LAST_FILLED), 'the held record (the reply waited on nothing it needs)').toBe(1);
      expect(seen.get(corrupted), 'the corrupt expert: refused, fetched once more').toBe(2);
      const twice = [...seen].filter(([r, n]) => n > 1 && r !== corrupted);
      expect(twice, 'no other record fetched twice').toEqual([]);
      expect(seen.size).toBe(576 + 100 + 3);
      expect((await pg.tp.page.evaluate(() => window.engineTest.fillState())).warnings).toEqual([]);
    } finally {
      release();
      await context.unroute(`**${MODEL}**`);
    }
  });

  it('the server gone mid-fill: ExpertUnavailableError, or stored experts substituted; the next visit resumes without refetching and replies', async () => {
    await pg.tp.page.evaluate((m) => window.engineTest.forget(m), MODEL); // a fresh store
    const context = pg.tp.page.context(), stored = new Set<string>();
    let experts = 0, down = false;
    await context.route(`**${MODEL}**`, async (route) => {
      if (isExpert(route.request().url()) && ++experts > 160) down = true; // the server stops after 160 experts (~18 a layer: k = 10 can be substituted)
      if (down) return route.abort('connectionrefused');
      stored.add(rangeOf(route));
      return route.continue();
    });
    const load = await pg.tp.page.evaluate((m) => window.engineTest.load(m, true, true), MODEL);
    expect(load.last).toMatch(/ready|fill/);
    await expect.poll(async () => (await pg.tp.page.evaluate(() => window.engineTest.fillState())).warnings.length, { timeout: 30_000, interval: 200 }).toBe(1);
    const failed = await pg.tp.page.evaluate((p) => window.engineTest.tryStream(p, 16), PROMPT);
    expect(failed.error?.name).toBe('ExpertUnavailableError');
    expect(failed.error?.typed).toBe(true);
    expect(failed.error?.message).toMatch(/of 576 experts .* are stored\. Reconnect and send the message again/);
    await pg.tp.page.evaluate(() => window.engineTest.unload());
    // still offline, opted in to substitutes: the reply goes on with stored experts in place of the missing ones
    await pg.tp.page.evaluate((m) => window.engineTest.load(m, true, true, { unavailableExperts: 'substitute' }), MODEL);
    const approx = await pg.tp.page.evaluate((p) => window.engineTest.stream(p, 4), PROMPT);
    const { totals } = (approx.usage as { expert_cache: { totals: { unreachable: number; replaced: number } } }).expert_cache;
    expect(approx.count).toBeGreaterThan(0);
    expect(totals.unreachable).toBeGreaterThan(0);
    expect(totals.replaced).toBeGreaterThanOrEqual(totals.unreachable);
    await pg.tp.page.evaluate(() => window.engineTest.unload());

    await context.unroute(`**${MODEL}**`);
    pg.tp.errors.splice(0); // the refused requests, logged by the browser
    const again: string[] = [];
    await context.route(`**${MODEL}**`, (route) => {
      if (route.request().headers()['range']) again.push(rangeOf(route));
      return route.continue();
    });
    try {
      await pg.tp.page.evaluate((m) => window.engineTest.load(m, true, true), MODEL);
      expect((await pg.tp.page.evaluate((p) => window.engineTest.stream(p, 16), PROMPT)).text).toBe(REPLY);
      expect(again.filter((r) => stored.has(r)), 'records stored on the first visit, fetched again').toEqual([]);
    } finally {
      await context.unroute(`**${MODEL}**`);
    }
  });

  it('two tabs at once: no record fetched twice, both fills complete', async () => {
    const session = await startBrowser();
    try {
      const a = await session.open('/test/browser/pages/engine.html', 'engineTest'), b = await session.open('/test/browser/pages/engine.html', 'engineTest', a);
      const seen = new Map<string, number>();
      await a.page.context().route(`**${MODEL}**`, async (route) => {
        if (route.request().headers()['range']) seen.set(rangeOf(route), (seen.get(rangeOf(route)) ?? 0) + 1);
        if (isExpert(route.request().url())) await new Promise((r) => setTimeout(r, 10));
        return route.continue();
      });
      await Promise.all([a, b].map((tp) => tp.page.evaluate((m) => window.engineTest.load(m, true, true), MODEL)));
      for (const tp of [a, b]) {
        await expect.poll(async () => {
          const f = await tp.page.evaluate(() => window.engineTest.fillState());
          return f.last !== undefined && f.last.loaded === f.last.total;
        }, { timeout: 120_000, interval: 500 }).toBe(true);
      }
      expect([...seen].filter(([, n]) => n > 1), 'records fetched twice').toEqual([]);
      expect(seen.size).toBe(576 + 100 + 3);
      for (const tp of [a, b]) {
        await tp.page.evaluate(() => window.engineTest.unload());
        tp.check();
      }
    } finally {
      await session.close();
    }
  });
});
