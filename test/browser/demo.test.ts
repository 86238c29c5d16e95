// The chat demo (demo/) in Chromium with a fresh profile: it loads the embedded brown-tiny in a worker, a greedy
// reply matches the engine's (test/browser/engine.test.ts), Stop ends a long reply midway, and without WebGPU the
// page explains why instead of breaking. Screenshots land in test-results/demo-*.png for a human to look at.
import { mkdirSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';
import { build, preview, type PreviewServer } from 'vite';
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
    expect(await page.textContent('#load-text')).toMatch(/ready/);
    await page.fill('#temperature', '0');
    await replyDone(await send(PROMPT));
    expect(await page.textContent('#messages li.user .body')).toBe(PROMPT);
    expect(await page.textContent('#messages li.assistant .body')).toBe(REPLY);
    expect(await page.evaluate(() => window.demo.lastFinish)).toBe('stop');
    const stats = await page.textContent('#stats-list');
    expect(stats).toMatch(/Decode speed\s*[\d.]+ tok\/s/);
    expect(stats).toMatch(/Reply tokens\s*\d+/);
    await page.screenshot({ path: `${SHOTS}/demo-chat.png` });
    await page.locator('aside').screenshot({ path: `${SHOTS}/demo-stats.png` });
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
    expect(STORY.startsWith(await page.textContent('#messages li.assistant .body') ?? 'x')).toBe(true);
    expect(await page.textContent('#messages li.assistant .meta')).toMatch(/^stopped/);
    expect(await page.isEnabled('#send')).toBe(true);
    await page.screenshot({ path: `${SHOTS}/demo-stopped.png` });
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

  beforeAll(async () => {
    await build({ configFile: 'demo/vite.config.ts', logLevel: 'warn' });
    server = await preview({ configFile: 'demo/vite.config.ts', logLevel: 'warn', preview: { host: '127.0.0.1', port: 0 } });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it('the site root redirects to the demo, which loads the model', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('response', (r) => r.status() >= 400 && errors.push(`HTTP ${r.status()} for ${r.url()}`));
    await page.goto(`http://127.0.0.1:${(server.httpServer.address() as AddressInfo).port}/`);
    await page.waitForFunction(() => window.demo?.ready, undefined, { timeout: 240_000 });
    expect(page.url()).toMatch(/\/demo\/$/);
    expect(errors).toEqual([]);
  });
});
