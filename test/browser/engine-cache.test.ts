// createWorkerEngine with `cache: true`: the first load downloads brown-tiny-q4 into IndexedDB (phase 'download'),
// a later load in the same profile reads it from there even with every model request failing (as offline), and
// both reply like the HTTP engine.
import { describe, expect, it } from 'vitest';
import { browserSkipReason, usePage } from '../helpers/browser.ts';

const skip = browserSkipReason();
const PROMPT = 'The jury said it did find that many of the voters were not qualified.';
const REPLY = "These weren't it??";

describe.skipIf(skip)('Engine with the IndexedDB cache (chromium)', () => {
  const pg = usePage('/test/browser/pages/engine.html', 'engineTest', (page) => page.evaluate(() => window.engineTest.unload()));

  it('downloads into IndexedDB on first load, then loads from it with the network failing', async () => {
    const first = await pg.tp.page.evaluate(() => window.engineTest.load('/models/brown-tiny-q4/', true));
    expect(first.downloads).toBeGreaterThan(1);
    expect(first.last).toBe('ready');
    expect((await pg.tp.page.evaluate((p) => window.engineTest.stream(p, 16), PROMPT)).text).toBe(REPLY);
    await pg.tp.page.evaluate(() => window.engineTest.unload());

    let modelRequests = 0;
    await pg.tp.page.context().route('**/models/brown-tiny-q4/**', (route) => {
      modelRequests++;
      return route.abort('internetdisconnected');
    });
    const second = await pg.tp.page.evaluate(() => window.engineTest.load('/models/brown-tiny-q4/', true));
    pg.tp.errors.splice(0); // the failed manifest request is expected and logged by the browser
    expect(modelRequests).toBe(1); // only the manifest was tried
    expect(second.downloads).toBe(0);
    expect((await pg.tp.page.evaluate((p) => window.engineTest.stream(p, 16), PROMPT)).text).toBe(REPLY);
  });
});
