// The engine in Chromium (WebGPU on SwiftShader): createSharedEngine, on a page without SharedWorker, falls back to a
// dedicated module worker, says so, loads the packed int4 brown-tiny from the Vite dev server there and streams the
// same reply as the Node engine (test/gpu/engine.test.ts) and
// `q3n generate --chat`; a ContextLengthError thrown in the worker arrives in the page as that class, with its
// fields and the worker's stack; and the built library (npm run build, dist/lib) works from the plain HTML page
// examples/plain-html/index.html (createWorkerEngine) served by a bare static server (no Range support: HttpStore's
// whole-file path).
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve } from 'node:path';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { browserSkipReason, startBrowser, usePage, type BrowserSession } from '../helpers/browser.ts';

const skip = browserSkipReason();
const PROMPT = 'The jury said it did find that many of the voters were not qualified.';
const REPLY = "These weren't it??"; // as in test/gpu/engine.test.ts

describe.skipIf(skip)('Engine in a Web Worker (chromium)', () => {
  const pg = usePage('/test/browser/pages/engine.html', 'engineTest', (page) => page.evaluate(() => window.engineTest.unload()));

  it('loads brown-tiny-q4 from the dev server and streams the Node engine\'s reply (createSharedEngine without SharedWorker: a dedicated worker, and says so)', async () => {
    const loaded = await pg.tp.page.evaluate(() => window.engineTest.load('/models/brown-tiny-q4/'));
    console.log(`[browser engine] loaded in ${loaded.seconds.toFixed(1)} s, ${loaded.progress} progress reports`);
    expect(loaded.last).toBe('ready');
    expect(loaded).toMatchObject({ mode: 'dedicated', fallbackReason: 'this browser has no SharedWorker', info: { clients: 1, loads: 1 } });
    const r = await pg.tp.page.evaluate((p) => window.engineTest.stream(p, 48), PROMPT);
    console.log(`[browser engine] ${JSON.stringify(r.usage)}`);
    expect(r.text).toBe(REPLY);
    expect(r.finish).toBe('stop');
    expect(r.count).toBeGreaterThan(3);
    const prompt = (r.usage as { prompt_tokens: number }).prompt_tokens - 1; // the prefill's tokens: one step of 256
    expect(r.progress).toEqual([{ done: prompt, total: prompt }]);
  });

  it('a saved session restores into a newly loaded worker engine and gives the same reply, prefilling only the new turn', async () => {
    const r = await pg.tp.page.evaluate((p) => window.engineTest.sessionAcrossEngines('/models/brown-tiny-q4/', p), PROMPT);
    expect(r.again).toBe(r.straight);
    expect(r.messages).toBe(2);
    expect(r.cachedAgain).toBe(r.tokens);
    expect(r.cachedAgain).toBe(r.cachedStraight);
    expect(r.bytes).toBeGreaterThan(r.tokens * 4);
  });

  it('a signal aborts a streamed reply in the worker', async () => {
    const r = await pg.tp.page.evaluate((p) => window.engineTest.abortAfter(p, 1), PROMPT);
    expect(r.finish).toBe('abort');
    expect(r.completion_tokens).toBeLessThan(6); // the abort message reaches the worker a token or two later
  });

  it('a typed error crosses the worker boundary with its class, fields and stack', async () => {
    const e = await pg.tp.page.evaluate(() => window.engineTest.contextError());
    expect(e).not.toBeNull();
    expect(e!.name).toBe('ContextLengthError');
    expect(e!.typed).toBe(true);
    expect(e!.limit).toBe(256);
    expect(e!.message).toMatch(/exceeds the engine's context of 256 tokens/);
    expect(e!.stack).toMatch(/local-engine/); // thrown in the worker
  });
});

/** A bare static server for the repository root: no Range support, no transforms. */
function staticServer(root: string): Promise<Server> {
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json', '.map': 'application/json' };
  const server = createServer((req, res) => {
    const path = resolve(join(root, decodeURIComponent(new URL(req.url!, 'http://x').pathname)));
    const file = existsSync(path) && statSync(path).isDirectory() ? join(path, 'index.html') : path;
    if (!file.startsWith(root) || !existsSync(file)) return void res.writeHead(404).end();
    res.writeHead(200, { 'Content-Type': types[extname(file)] ?? 'application/octet-stream', 'Content-Length': statSync(file).size });
    createReadStream(file).pipe(res);
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

describe.skipIf(skip)('the built library in a plain HTML page (chromium)', () => {
  let session: BrowserSession;
  let server: Server;

  beforeAll(async () => {
    await build({ configFile: 'vite.lib.config.ts', logLevel: 'warn' });
    server = await staticServer(process.cwd());
    session = await startBrowser();
  });
  afterAll(async () => {
    await session?.close();
    server?.close();
  });

  it('examples/plain-html streams a reply into the page', async () => {
    const page = await session.browser.newPage();
    const errors: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('response', (r) => r.status() >= 400 && errors.push(`HTTP ${r.status()} for ${r.url()}`));
    await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/examples/plain-html/`);
    await page.waitForSelector('button:not([disabled])', { timeout: 240_000 });
    await page.click('button');
    await page.waitForFunction(() => document.getElementById('status')!.textContent!.startsWith('Done'), undefined, { timeout: 240_000 });
    expect(await page.textContent('#reply')).toBe(REPLY);
    expect(errors).toEqual([]);
    await page.close();
  });
});
