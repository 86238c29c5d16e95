// The chat demo (demo/) in Chromium with a fresh profile: it downloads the embedded brown-tiny into IndexedDB and
// loads it in a worker with half its experts streaming, a greedy reply matches the engine's
// (test/browser/engine.test.ts) and draws the expert heatmap, Stop ends a long reply midway, the stored-models panel
// lists the model and deletes it, cache-aware routing (?routing=) reports the picks it replaced, and without WebGPU the page explains why instead of breaking. The built site
// (npm run build:demo) works offline after one visit: its service worker serves the page, IndexedDB the model.
// Screenshots land in test-results/demo-*.png for a human to look at.
import { mkdirSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { build, preview, type PreviewServer } from 'vite';
import { ROW as HEATMAP_ROW } from '../../demo/heatmap.ts';
import { renderMarkdown } from '../../demo/markdown.ts';
import { browserSkipReason, CHROMIUM, CHROMIUM_ARGS, startBrowser, type BrowserSession, type TestPage } from '../helpers/browser.ts';

const skip = browserSkipReason();
const PROMPT = 'The jury said it did find that many of the voters were not qualified.';
const REPLY = "These weren't it??"; // as in test/browser/engine.test.ts
const STORY = 'I am not going to be a man who has been able to get back to the house'; // its greedy reply's start
const SHOTS = 'test-results';

describe('renderMarkdown (the demo\'s reply rendering)', () => {
  it('escapes HTML and renders paragraphs, bold, inline code and fenced code blocks', () => {
    expect(renderMarkdown('a <b>x</b> & "y"')).toBe('<p>a &lt;b&gt;x&lt;/b&gt; &amp; &quot;y&quot;</p>');
    expect(renderMarkdown('one\ntwo\n\n**three** `4<5`')).toBe('<p>one<br>two</p><p><strong>three</strong> <code>4&lt;5</code></p>');
    expect(renderMarkdown('see:\n```js\nif (a < b) **c**\n```\ndone')).toBe('<p>see:</p><pre><code>if (a &lt; b) **c**\n</code></pre><p>done</p>');
    expect(renderMarkdown('open ```\nx <')).toBe('<p>open</p><pre><code>x &lt;</code></pre>'); // still streaming
  });
});

describe.skipIf(skip)('the demo chat app (chromium)', () => {
  let session: BrowserSession;
  let tp: TestPage;

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    session = await startBrowser();
    tp = await session.open('/demo/', 'demo');
    await tp.page.setViewportSize({ width: 1100, height: 760 });
  });
  afterAll(async () => {
    await session?.close();
  });
  afterEach(() => tp?.check());

  async function send(text: string) {
    const replies = await tp.page.evaluate(() => window.demo.replies);
    await tp.page.fill('#prompt', text);
    await tp.page.click('#send');
    return replies;
  }
  const replyDone = (before: number) =>
    tp.page.waitForFunction((n) => window.demo.replies > n, before, { timeout: 240_000 });

  it('loads brown-tiny and shows its greedy reply with stats', async () => {
    const { page } = tp;
    await page.waitForFunction(() => window.demo.ready, undefined, { timeout: 240_000 });
    expect(await page.textContent('#load-text')).toMatch(/^Ready to chat: the model is stored in this browser as far as it needs to start/);
    expect(await page.evaluate(() => window.demo.source)).toBe('network');
    await page.fill('#temperature', '0');
    await replyDone(await send(PROMPT));
    expect(await page.textContent('#messages li.user .body')).toBe(PROMPT);
    expect(await page.textContent('#messages li.assistant .body')).toBe(REPLY);
    expect(await page.evaluate(() => window.demo.lastFinish)).toBe('stop');
    const stats = await page.textContent('#stats-list');
    expect(stats).toMatch(/Decode speed\s*[\d.]+ tok\/s/);
    expect(stats).toMatch(/Reply tokens\s*\d+/);
    expect(stats).toMatch(/Context\s*\d+ of 4,096 tokens \([\d.]+ %\)/);
    expect(stats).toMatch(/Experts on GPU\s*32 of 64 per layer/); // the default budget: 50 %
    expect(stats).toMatch(/Expert cache hits\s*[\d.]+ %/);
    expect(stats).toMatch(/RAM tier\s*[\d.]+ [MG]iB: [\d.]+ % of misses/); // sized from navigator.deviceMemory
    expect(stats).toMatch(/Streamed per token\s*[\d.]+ KiB of experts/);
    expect(stats).toMatch(/GPU memory\s*[\d.]+ MiB/);
    // The per-expert counters behind the heatmap add up to the cache's totals.
    const counts = await page.evaluate(() => {
      const c = window.demo.lastUsage!.expert_cache as { totals: { hits: number; misses: number }; expertUse: { hits: number[]; misses: number[] }[] };
      const sum = (k: 'hits' | 'misses') => c.expertUse.flatMap((u) => u[k]).reduce((a, b) => a + b, 0);
      return { hits: sum('hits'), misses: sum('misses'), totals: c.totals };
    });
    expect(counts.hits).toBe(counts.totals.hits);
    expect(counts.misses).toBe(counts.totals.misses);
    // The heatmap: every layer's router picked at least top_k = 10 experts, some found on the GPU (blue), some
    // streamed in (orange).
    expect(await page.isVisible('#heatmap')).toBe(true);
    const cells = await page.evaluate((ROW) => {
      const c = document.querySelector<HTMLCanvasElement>('#heatmap')!;
      const px = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      const rows = Array.from({ length: c.height / ROW }, () => 0); // picked experts per layer
      let blue = 0, orange = 0;
      for (let l = 0; l < rows.length; l++) {
        for (let e = 0; e < c.width; e++) {
          const i = (l * ROW * c.width + e) * 4, [r, g, b] = [px[i], px[i + 1], px[i + 2]];
          if (r > 235 && g > 235 && b > 235) continue; // pale: not picked
          rows[l]++;
          if (b > r) blue++;
          else orange++;
        }
      }
      return { width: c.width, rows, blue, orange };
    }, HEATMAP_ROW);
    expect(cells.width).toBe(64);
    expect(cells.rows).toHaveLength(8);
    for (const n of cells.rows) expect(n).toBeGreaterThanOrEqual(10);
    expect(cells.blue).toBeGreaterThan(0);
    expect(cells.orange).toBeGreaterThan(0);
    await page.screenshot({ path: `${SHOTS}/demo-chat.png` });
    await page.locator('aside').screenshot({ path: `${SHOTS}/demo-stats.png` });
  });

  it('a reload restores the chat without running its tokens again, and it continues from there', async () => {
    const { page } = tp;
    await page.waitForFunction(() => window.demo.saved > 0); // the chat above was saved after its reply
    await page.reload();
    await page.waitForFunction(() => window.demo.ready, undefined, { timeout: 240_000 });
    expect(await page.textContent('#messages li.user .body')).toBe(PROMPT);
    expect(await page.textContent('#messages li.assistant .body')).toBe(REPLY);
    const restored = await page.evaluate(() => window.demo.restoredTokens);
    expect(restored).toBeGreaterThan(20);
    expect(await page.textContent('#load-text')).toMatch(new RegExp(`chat is restored \\(${restored} tokens, not run again\\)`));
    await page.locator('#chat-list li', { hasText: '(this chat)' }).waitFor();
    await page.fill('#max-tokens', '3');
    await replyDone(await send('And then?'));
    expect(await page.locator('#messages li.assistant').count()).toBe(2);
    expect((await page.evaluate(() => window.demo.lastUsage))!.cached_prompt_tokens).toBe(restored);
    await page.locator('aside').screenshot({ path: `${SHOTS}/demo-chats.png` });
  });

  it('a second tab uses the model the first one loaded, with a chat of its own', async () => {
    const second = await session.open('/demo/', 'demo', tp);
    try {
      await second.page.waitForFunction(() => window.demo.ready, undefined, { timeout: 240_000 });
      expect(await second.page.evaluate(() => window.demo.engineMode)).toBe('shared');
      expect(await second.page.textContent('#load-text')).toMatch(/already loaded by another tab: ready to chat\. Shared with 1 other tab/);
      // the first tab's chat (the last one saved) stays with the first tab: listed, not restored here
      expect(await second.page.evaluate(() => window.demo.restoredTokens)).toBe(0);
      expect(await second.page.locator('#messages li').count()).toBe(0);
      await second.page.locator('#chat-list li', { hasText: '(open in another tab)' }).waitFor();
      second.check();
    } finally {
      await second.page.close();
    }
  });

  it('routing "keep the best 3 picks" (?routing=3) at a 25 % budget replies and shows the picks it replaced', async () => {
    const other = await session.open('/demo/?experts=25&routing=3', 'demo');
    try {
      await other.page.waitForFunction(() => window.demo.ready, undefined, { timeout: 240_000 });
      expect(await other.page.inputValue('#routing')).toBe('3');
      await other.page.fill('#prompt', PROMPT);
      await other.page.click('#send');
      await other.page.waitForFunction(() => window.demo.replies > 0, undefined, { timeout: 240_000 });
      const stats = await other.page.textContent('#stats-list');
      expect(stats).toMatch(/Experts on GPU\s*16 of 64 per layer/);
      expect(stats).toMatch(/Picks replaced\s*[\d.]+ a token a layer/);
      other.check();
    } finally {
      await other.page.context().close();
    }
  });

  it('Stop ends a long reply midway', async () => {
    const { page } = tp;
    await page.click('#new-chat');
    await page.fill('#max-tokens', '200');
    // brown-tiny's greedy reply to this runs past 30 tokens (found with the Node engine).
    const before = await send('Tell me a story.');
    await page.waitForFunction(() => (document.querySelector('#messages li.assistant .body')?.textContent ?? '').split(' ').length >= 5, undefined, { timeout: 240_000 });
    await page.click('#stop');
    await replyDone(before);
    const usage = await page.evaluate(() => window.demo.lastUsage);
    expect(await page.evaluate(() => window.demo.lastFinish)).toBe('abort');
    expect(usage!.completion_tokens).toBeGreaterThanOrEqual(5);
    expect(usage!.completion_tokens).toBeLessThan(30);
    const partial = await page.textContent('#messages li.assistant .body') ?? 'x';
    expect(STORY.startsWith(partial), partial).toBe(true);
    expect(await page.textContent('#messages li.assistant .meta')).toMatch(/^stopped/);
    expect(await page.isEnabled('#send')).toBe(true);
    await page.screenshot({ path: `${SHOTS}/demo-stopped.png` });
  });

  it('the stored-models panel lists brown-tiny with its size, and Delete removes it', async () => {
    const { page } = tp;
    const item = page.locator('#stored-list li:not(.chats)', { hasText: 'brown-tiny-q4' });
    await item.waitFor();
    // the experts arrive in the background (backgroundExperts): the panel says so, then refreshes when all are stored
    await expect.poll(() => item.textContent(), { timeout: 120_000, interval: 500 }).toMatch(/brown-tiny-q4\s*13\.6 MiB\s*Delete\s*complete · in use by this page/);
    expect(await page.textContent('#quota')).toMatch(/This site uses [\d.]+ [KMG]iB of its [\d.]+ [KMG]iB quota/);
    // The engine already asked for persistence while downloading; the button asks again. Chromium answers at once
    // (headless: refused, as for a site the user never bookmarked), without a prompt.
    if (await page.isEnabled('#persist')) {
      expect(await page.textContent('#persist-state')).toBe('Not persistent (yet).');
      await page.click('#persist');
      await page.waitForFunction(() => document.querySelector('#persist-state')!.textContent !== 'Not persistent (yet).');
    }
    expect(await page.textContent('#persist-state')).toMatch(/^(Persistent: the browser will not clear it|Refused by the browser)/);
    // the model's saved chats beside it, with their size; Delete empties the Chats panel
    await page.waitForFunction(() => window.demo.saved === window.demo.replies); // the stopped reply's chat is saved
    const saved = page.locator('#stored-list li.chats', { hasText: 'Saved chats of brown-tiny-q4' });
    expect(await saved.textContent()).toMatch(/[\d.]+ [KM]iB\s*Delete\s*\d+ chats?, each with the model's state after it/);
    await page.locator('#storage').screenshot({ path: `${SHOTS}/demo-storage.png` });
    await saved.locator('button').click();
    await page.locator('#chat-list li', { hasText: 'No saved chats yet' }).waitFor();
    expect(await page.locator('#stored-list li.chats').count()).toBe(0);
    await item.locator('button').click();
    await page.waitForSelector('#stored-list li:has-text("No models stored")', { timeout: 30_000 });
    expect(await page.evaluate(async () => (await indexedDB.databases()).map((d) => d.name))).not.toContainEqual(expect.stringMatching(/^q3n:/));
    expect(await page.textContent('#load-text')).toMatch(/deleted/);
    expect(await page.isEnabled('#send')).toBe(false);
  });

  it('without WebGPU the page explains what to do', async () => {
    // Chromium on Linux without --enable-unsafe-webgpu has navigator.gpu but no adapter: the worker's
    // WebGPUNotAvailableError reaches the page, which shows the explanation instead of the chat.
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS.filter((a) => a !== '--enable-unsafe-webgpu') });
    const page = await browser.newPage({ baseURL: session.baseURL });
    await page.goto('/demo/');
    await page.waitForSelector('#no-webgpu:not([hidden])', { timeout: 30_000 });
    expect(await page.isVisible('#app')).toBe(false);
    expect(await page.textContent('#no-webgpu')).toMatch(/needs WebGPU/);
    await page.screenshot({ path: `${SHOTS}/demo-no-webgpu.png` });
    await browser.close();
  });
});

describe.skipIf(skip)('the built demo (npm run build:demo) served as static files (chromium)', () => {
  let server: PreviewServer;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const errors: string[] = [];
  let requests = 0; // requests for the site's files that reached the server
  let offline = false; // the server drops every connection, as a network that is off

  beforeAll(async () => {
    await build({ configFile: 'demo/vite.config.ts', logLevel: 'warn' });
    server = await preview({ configFile: 'demo/vite.config.ts', logLevel: 'warn', preview: { host: '127.0.0.1', port: 0 } });
    // Not counted: the browser's own update checks of the service worker script, which setOffline() does not stop
    // (offline they would just fail).
    server.httpServer.on('request', (req) => req.url !== '/sw.js' && requests++);
    // setOffline() does not reach the SharedWorker the engine runs in: offline, the server drops its requests
    // too. Not counted: the model's manifest, which the engine asks the network for first (and, offline, gets none).
    server.httpServer.prependListener('request', (req) => {
      if (!offline) return;
      if (/manifest\.json$/.test(req.url ?? '')) requests--;
      req.socket.destroy();
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    context = await browser.newContext(); // one fresh profile for both tests: the second one revisits offline
    page = await context.newPage();
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('response', (r) => r.status() >= 400 && errors.push(`HTTP ${r.status()} for ${r.url()}`));
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('the site root redirects to the demo, which loads the model', async () => {
    await page.goto(`http://127.0.0.1:${(server.httpServer.address() as AddressInfo).port}/`);
    await page.waitForFunction(() => window.demo?.ready, undefined, { timeout: 240_000 });
    expect(page.url()).toMatch(/\/demo\/$/);
    expect(errors.splice(0)).toEqual([]);
  });

  // The first visit (the test above) downloaded the model; its chat was tested on the dev server, and a reply
  // costs ~15 s on SwiftShader, so the offline visit is the one that chats.
  it('after one visit, a reload with the network off opens the page and gets the same greedy reply', async () => {
    await page.waitForFunction(() => window.demo.offlineReady, undefined, { timeout: 30_000 }); // the service worker took over
    expect(await page.isVisible('#offline-ready')).toBe(true);
    // the experts were stored in the background after 'ready' (backgroundExperts): offline needs all of them
    await page.waitForFunction(() => document.querySelector('#fill-text')?.textContent?.startsWith('The whole model is stored'), undefined, { timeout: 120_000 });

    await context.setOffline(true);
    offline = true;
    requests = 0;
    await page.reload();
    await page.waitForFunction(() => window.demo?.ready, undefined, { timeout: 240_000 });
    expect(await page.evaluate(() => window.demo.source)).toBe('storage');
    expect(await page.textContent('#load-text')).toMatch(/from this browser's storage \(no download\): ready/);
    await page.fill('#prompt', PROMPT);
    await page.click('#send');
    await page.waitForFunction(() => window.demo.replies > 0, undefined, { timeout: 240_000 });
    expect(await page.textContent('#messages li.assistant .body')).toBe(REPLY);
    expect(requests).toBe(0);
    // The engine tries the model's manifest first; offline, that fetch fails and it loads the stored copy.
    expect(errors.splice(0).filter((e) => !/manifest\.json|ERR_INTERNET_DISCONNECTED/.test(e))).toEqual([]);
    await page.screenshot({ path: `${SHOTS}/demo-offline.png` });
  });
});
