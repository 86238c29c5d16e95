// Fresh browser profiles for tests that need several pages of one profile (reloads, two tabs) or a profile per trial
// (test/browser/faults-*.test.ts), on a session from startBrowser().
//
// The dev server's HMR socket is muted in these contexts: the server in browser.ts still watches the tree (Vite's
// mergeConfig drops the `watch: null` it passes), so an edit anywhere in the repository would reload the pages
// mid-test, which a fault test would take for a fault.
import type { BrowserContext, Page } from 'playwright-core';
import type { BrowserSession } from './browser.ts';

/** A page and what went wrong in it: console errors, uncaught exceptions, a crash. */
export interface ProfilePage {
  page: Page;
  errors: string[];
}

/** A new context (its own IndexedDB, quota and locks) on the session's server; `init` (a script) runs in every page before its own. */
export async function newProfile(session: BrowserSession, init?: string): Promise<BrowserContext> {
  const context = await session.browser.newContext({ baseURL: session.baseURL });
  await context.routeWebSocket(/[?&]token=/, () => {}); // Vite's HMR client connects to nothing and hears nothing
  if (init) await context.addInitScript({ content: init });
  return context;
}

/** Open `path` in `context` and wait until the page has set `window[waitFor]`. */
export async function openPage(context: BrowserContext, path: string, waitFor: string): Promise<ProfilePage> {
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(`console.error: ${m.text()}`));
  page.on('pageerror', (e) => errors.push(`uncaught: ${e.stack ?? e.message}`));
  page.on('crash', () => errors.push('the page crashed'));
  await page.goto(path);
  await page.waitForFunction((name) => name in window, waitFor, { timeout: 30_000 });
  return { page, errors };
}
