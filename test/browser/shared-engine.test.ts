// One engine for a site's tabs (createSharedEngine) in Chromium, WebGPU on SwiftShader: two tabs of one browser
// profile connect to one SharedWorker, which loads brown-tiny once; their requests, sent at the same time, both get
// the greedy reply of their own conversation (the other tab's turn in between changes nothing, and a second turn
// still prefills only its new tokens); closing a tab mid-reply frees the engine for the other. The fallback to a
// dedicated worker (no SharedWorker) is the engine of test/browser/engine.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserSkipReason, startBrowser, type BrowserSession, type TestPage } from '../helpers/browser.ts';

const skip = browserSkipReason();
const MODEL = '/models/brown-tiny-q4/';
const PAGE = '/test/browser/pages/shared.html';
const PROMPT = 'The jury said it did find that many of the voters were not qualified.';
const REPLY = "These weren't it??"; // as in test/gpu/engine.test.ts
const OTHER = 'It was a cold morning in the city.';

describe.skipIf(skip)('One engine shared by two tabs (chromium, SharedWorker)', () => {
  let session: BrowserSession;
  let a: TestPage, b: TestPage;
  beforeAll(async () => {
    session = await startBrowser();
    a = await session.open(PAGE, 'sharedTest');
    b = await session.open(PAGE, 'sharedTest', a);
  });
  afterAll(() => session?.close());

  it('the second tab connects to the model the first one loaded', async () => {
    const la = await a.page.evaluate((m) => window.sharedTest.load(m), MODEL);
    expect(la).toMatchObject({ mode: 'shared', info: { clients: 1, loads: 1 } });
    expect(la.progress.at(-1)).toBe('ready');
    const lb = await b.page.evaluate((m) => window.sharedTest.load(m), MODEL);
    console.log(`[shared] first tab loaded in ${la.seconds.toFixed(1)} s, second connected in ${lb.seconds.toFixed(2)} s`);
    expect(lb).toMatchObject({ mode: 'shared', info: { clients: 2, loads: 1 }, progress: ['ready'] });
    expect(lb.seconds).toBeLessThan(la.seconds / 2);
    a.check();
    b.check();
  });

  it('requests sent at once from both tabs each get their own conversation\'s greedy reply', async () => {
    const [ra, rb] = await Promise.all([
      a.page.evaluate((p) => window.sharedTest.say(p, 48), PROMPT),
      b.page.evaluate((p) => window.sharedTest.say(p, 12), OTHER),
    ]);
    expect(ra.text).toBe(REPLY);
    expect(rb.text.length).toBeGreaterThan(0);
    // second turns of both, again at once: each continues its own conversation from the GPU state switched back in
    const [ra2, rb2] = await Promise.all([
      a.page.evaluate(() => window.sharedTest.say('And then?', 6)),
      b.page.evaluate(() => window.sharedTest.say('And then?', 6)),
    ]);
    expect(ra2.cached).toBeGreaterThan(0);
    expect(rb2.cached).toBeGreaterThan(0);
    // tab A alone, from a fresh conversation, with B's messages: the same reply B got beside A
    await a.page.evaluate(() => window.sharedTest.resetChat());
    const alone = await a.page.evaluate((p) => window.sharedTest.say(p, 12), OTHER);
    expect(alone.text).toBe(rb.text);
    expect(await a.page.evaluate(() => window.sharedTest.info())).toEqual({ clients: 2, loads: 1 });
    a.check();
    b.check();
  });

  it('closing a tab mid-reply leaves the other tab working, and the engine loaded', async () => {
    await a.page.evaluate(() => window.sharedTest.resetChat());
    await b.page.evaluate(() => window.sharedTest.resetChat());
    // brown-tiny's greedy reply to this runs past 30 tokens (test/browser/demo.test.ts)
    void a.page.evaluate(() => window.sharedTest.say('Tell me a story.', 200, 3)).catch(() => {});
    await a.page.waitForFunction(() => (window as unknown as { marked?: boolean }).marked, undefined, { timeout: 120_000 });
    const other = b.page.evaluate((p) => window.sharedTest.say(p, 48), PROMPT);
    await a.page.close();
    const rb = await other;
    expect(rb.text).toBe(REPLY);
    await b.page.waitForFunction(async () => (await window.sharedTest.info()).clients === 1, undefined, { timeout: 30_000, polling: 200 });
    expect(await b.page.evaluate(() => window.sharedTest.info())).toEqual({ clients: 1, loads: 1 });
    b.check();
  });
});
