// Browser tests: a Vite dev server on 127.0.0.1 (it serves our TypeScript and the `?raw` WGSL imports) and
// Debian's chromium driven by playwright-core, headless, WebGPU on whatever adapter Chromium finds (SwiftShader,
// a software Vulkan driver, on machines without a GPU). Every console error, uncaught exception, failed request
// and crash in the page or its workers is collected; `check()` turns them into a test failure. Uncaptured WebGPU
// errors count when the device comes from browserDevice() (test/browser/pages/gpu.ts), which logs them as errors.
// Never `npx playwright install`: the browser is the system's /usr/bin/chromium (the README set-up installs it).
import { existsSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { createServer, type ViteDevServer } from 'vite';
import { afterAll, afterEach, beforeAll } from 'vitest';

export const CHROMIUM = '/usr/bin/chromium';
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu', // WebGPU on Linux is behind this flag: without it requestAdapter() returns null
  '--ignore-gpu-blocklist', // not needed for SwiftShader; lets a blocklisted real GPU (e.g. a server card) serve WebGPU
  '--disable-background-networking', // no network here: no update checks, no field trials
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage', // containers often have a small /dev/shm
  '--no-sandbox', // CI runs as root, where the sandbox cannot start
  // As src/gpu/node-device.ts does for Dawn in Node: SwiftShader's Vulkan zero-initialisation of workgroup memory
  // makes each pipeline compile take ~0.5 s here (16 s of a brown-tiny load); Dawn then zero-initialises in the
  // shader instead, with the same semantics.
  '--disable-dawn-features=use_vulkan_zero_initialize_workgroup_memory_extension',
];

/** Why browser tests cannot run on this machine, or null. Only a missing chromium is a reason to skip; in CI it is an error. */
export function browserSkipReason(): string | null {
  if (existsSync(CHROMIUM)) return null;
  const reason = `${CHROMIUM} is absent: browser tests are skipped (the README set-up command installs it)`;
  if (process.env.CI) throw new Error(`${reason}, but CI must run them`);
  console.warn(`[browser] ${reason}`);
  return reason;
}

/** One page under test and everything that went wrong in it. */
export interface TestPage {
  page: Page;
  errors: string[];
  /** Throw if anything was reported since the last check, and start a fresh list. */
  check(): void;
}

export interface BrowserSession {
  baseURL: string;
  browser: Browser;
  /**
   * Open `path` (from the repository root, e.g. /test/browser/pages/smoke.html) in a fresh context, or as another tab
   * of `beside`'s (same storage, same SharedWorkers); with `waitFor`, wait until the page has set `window[waitFor]`
   * (its module loaded and ran).
   */
  open(path: string, waitFor?: string, beside?: TestPage): Promise<TestPage>;
  close(): Promise<void>;
}

export async function startBrowser(): Promise<BrowserSession> {
  const server = await startServer();
  const baseURL = `http://127.0.0.1:${(server.http.address() as AddressInfo).port}`;
  let browser: Browser;
  try {
    // launch() gives each run a fresh temporary profile (launchPersistentContext would reuse one).
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
  } catch (e) {
    await server.close();
    throw e;
  }
  const contexts: BrowserContext[] = [];
  return {
    baseURL,
    browser,
    async open(path, waitFor, beside) {
      // A context per page: its own storage (IndexedDB, caches), so tests do not see each other's data.
      const context = beside?.page.context() ?? await browser.newContext({ baseURL });
      if (!beside) contexts.push(context);
      const page = await context.newPage();
      const tp = watch(page);
      await page.goto(path);
      if (waitFor) {
        await page.waitForFunction((name) => name in window, waitFor, { timeout: 30_000 }).catch((e: Error) => {
          throw new Error(`${path} never set window.${waitFor}: ${e.message}\n${tp.errors.join('\n')}`);
        });
      }
      return tp;
    },
    async close() {
      for (const c of contexts) await c.close().catch(() => {});
      await browser.close().catch(() => {});
      await server.close();
    },
  };
}

/**
 * Vite in middleware mode behind our own HTTP server on port 0: the system picks a free port, so test files running
 * in parallel (and a developer's `npx vite` on 5173) never collide. 'mpa': a missing page is a 404, not index.html.
 */
async function startServer(): Promise<{ http: Server; close(): Promise<void> }> {
  // Vite's client in the page always opens a WebSocket. Left alone, middleware mode puts it on port 24678, where
  // the server of another test file running in parallel may answer (HTTP 400: a console error that fails the
  // test). Attaching the WebSocket to our own server keeps each page talking to its own server.
  let handler: ViteDevServer['middlewares'] | undefined;
  const http = createHttpServer((req, res) => handler!(req, res));
  const vite: ViteDevServer = await createServer({
    configFile: join(REPO_ROOT, 'vite.config.ts'),
    root: REPO_ROOT,
    appType: 'mpa',
    logLevel: 'warn',
    clearScreen: false,
    server: { middlewareMode: true, hmr: { server: http } },
  });
  // Test pages must never reload because a file changed mid-test (another test writing, an editor): close the
  // watcher (`watch: null` does not do it: Vite's config merge drops null values).
  await vite.watcher.close();
  handler = vite.middlewares;
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(0, '127.0.0.1', resolve);
  });
  return {
    http,
    async close() {
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
      await vite.close();
    },
  };
}

/** Collect console errors (page and workers: Playwright reports both on the page), uncaught exceptions, crashes and HTTP errors. */
function watch(page: Page): TestPage {
  const errors: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const where = msg.worker() ? `worker ${msg.worker()!.url()}` : msg.location().url;
    errors.push(`console.error (${where}): ${msg.text()}`);
  });
  page.on('pageerror', (err) => errors.push(`uncaught: ${err.stack ?? err.message}`));
  page.on('crash', () => errors.push('the page crashed'));
  page.on('response', (res) => {
    if (res.status() >= 400) errors.push(`HTTP ${res.status()} for ${res.url()}`);
  });
  page.on('requestfailed', (req) => {
    // A reload while a SharedWorker engine runs: Chrome aborts the new page's fetch of the worker script while it
    // tears down the old worker, then starts it again (the page's engine loads all the same).
    if (req.failure()?.errorText === 'net::ERR_ABORTED' && new URL(req.url()).pathname === '/src/worker.ts') return;
    errors.push(`request failed: ${req.url()} (${req.failure()?.errorText})`);
  });
  return {
    page,
    errors,
    check() {
      const found = errors.splice(0);
      if (found.length) throw new Error(`errors in the browser:\n${found.join('\n')}`);
    },
  };
}

/**
 * One browser session with one page for the enclosing describe block: opened before its tests, closed after
 * (`beforeClose` runs first, e.g. to unload an engine in the page); errors the page collects fail the test they
 * happened in, not the next one.
 */
export function usePage(path: string, waitFor: string, beforeClose?: (page: TestPage['page']) => Promise<unknown>): { readonly tp: TestPage; readonly session: BrowserSession } {
  const state = {} as { tp: TestPage; session: BrowserSession };
  beforeAll(async () => {
    state.session = await startBrowser();
    state.tp = await state.session.open(path, waitFor);
  });
  afterAll(async () => {
    if (beforeClose && state.tp) await beforeClose(state.tp.page).catch(() => {});
    await state.session?.close();
  });
  afterEach(() => state.tp?.check());
  return state;
}
