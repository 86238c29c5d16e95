// The engine page: exposes `window.engineTest` for test/browser/engine.test.ts and engine-cache.test.ts. The engine
// runs in a module worker (src/worker.ts, served by Vite) and loads the packed brown-tiny from the dev server's
// /models/ over HTTP. The page hides SharedWorker, as a browser without it: createSharedEngine then takes its
// fallback, a dedicated worker of the page (the worker side createWorkerEngine talks to as well).
import { createSharedEngine, deleteStoredModel, type SharedEngine } from '../../../src/index.ts';
import { ContextLengthError, Qwen3NextError } from '../../../src/errors.ts';
import type { EngineOptions } from '../../../src/engine/types.ts';

Reflect.deleteProperty(globalThis, 'SharedWorker');
let engine: SharedEngine | undefined;
const progress: string[] = [];
const fills: { loaded: number; total: number }[] = []; // phase 'fill' reports (backgroundExperts)
const outOfRange: string[] = []; // reports whose loaded is not within 0..total
const warnings: string[] = [];

const engineTest = {
  async load(model: string, cache = false, backgroundExperts = false, extra: Pick<EngineOptions, 'unavailableExperts'> = {}) {
    const t0 = performance.now();
    progress.length = 0;
    outOfRange.length = 0;
    fills.length = 0;
    warnings.length = 0;
    engine = await createSharedEngine(new URL('../../../src/worker.ts', import.meta.url), {
      model, cache, backgroundExperts, ...extra, maxContext: 256, onWarning: (w) => warnings.push(w),
      onProgress: (p) => {
        progress.push(p.phase);
        if (!(p.loaded >= 0 && p.loaded <= p.total)) outOfRange.push(`${p.phase} ${p.loaded} of ${p.total}`);
        if (p.phase === 'fill') fills.push({ loaded: p.loaded, total: p.total });
      },
    });
    return {
      seconds: (performance.now() - t0) / 1000, progress: progress.length, last: progress.at(-1), downloads: progress.filter((p) => p === 'download').length,
      mode: engine.mode, fallbackReason: engine.fallbackReason, info: await engine.info(), outOfRange: outOfRange.slice(),
    };
  },

  /** Delete a `cache` model's IndexedDB copy (the engine unloaded first: an open store blocks it). */
  async forget(model: string) {
    await engine?.unload();
    engine = undefined;
    await deleteStoredModel(new URL(model, location.href).href);
  },

  /** The background fill so far: its reports, the last one, and the warnings (a fill that stopped). */
  fillState() {
    return { reports: fills.length, last: fills.at(-1), warnings: warnings.slice() };
  },

  /** stream(), with a failure returned as its name and message. */
  async tryStream(content: string, maxTokens: number) {
    try {
      return { ok: await engineTest.stream(content, maxTokens) };
    } catch (e) {
      return { error: { name: (e as Error).name, message: (e as Error).message, typed: e instanceof Qwen3NextError } };
    }
  },

  async stream(content: string, maxTokens: number) {
    const progress: { done: number; total: number }[] = []; // onPrefillProgress, called from the worker
    const chunks = await engine!.chat.completions.create({ messages: [{ role: 'user', content }], max_tokens: maxTokens, stream: true, onPrefillProgress: (p) => progress.push(p) });
    let text = '', count = 0, finish: string | null = null, usage: unknown, fillAtFirstToken: { loaded: number; total: number } | undefined, firstTokenMs = 0;
    const t0 = performance.now();
    for await (const c of chunks) {
      if (count === 0) {
        fillAtFirstToken = fills.at(-1);
        firstTokenMs = performance.now() - t0;
      }
      text += c.choices[0].delta.content ?? '';
      count++;
      finish = c.choices[0].finish_reason;
      usage = c.usage;
    }
    return { text, count, finish, usage, progress, fillAtFirstToken, firstTokenMs };
  },

  /** Stream with a signal, aborting after the first `n` content pieces. */
  async abortAfter(content: string, n: number) {
    const controller = new AbortController();
    const chunks = await engine!.chat.completions.create({ messages: [{ role: 'user', content }], max_tokens: 40, stream: true, signal: controller.signal });
    let pieces = 0, finish: string | null = null, usage: { completion_tokens: number } | undefined;
    for await (const c of chunks) {
      if (c.choices[0].delta.content && ++pieces === n) controller.abort();
      finish = c.choices[0].finish_reason;
      usage = c.usage;
    }
    return { finish, completion_tokens: usage?.completion_tokens };
  },

  async contextError() {
    try {
      await engine!.chat.completions.create({ messages: [{ role: 'user', content: 'x' }], max_tokens: 1000, stream: true });
      return null;
    } catch (e) {
      const err = e as ContextLengthError;
      return { name: err.name, typed: err instanceof ContextLengthError && err instanceof Qwen3NextError, message: err.message, limit: err.limit, stack: err.stack ?? '' };
    }
  },

  /**
   * A conversation saved in one engine and restored into a new one (a page reload in miniature): the session Blob
   * crosses the worker boundary both ways; the restored engine's next reply is compared with the first engine's.
   */
  async sessionAcrossEngines(model: string, content: string) {
    const turn1 = await engine!.chat.completions.create({ messages: [{ role: 'user', content }], max_tokens: 4 });
    const session = await engine!.saveSession();
    const history = [{ role: 'user', content }, { ...turn1.choices[0].message }, { role: 'user', content: 'And then?' }];
    const straight = await engine!.chat.completions.create({ messages: history, max_tokens: 4 });
    await engine!.unload();
    await engineTest.load(model);
    const restored = await engine!.restoreSession(session);
    const again = await engine!.chat.completions.create({ messages: history, max_tokens: 4 });
    return {
      bytes: session.size, tokens: restored.tokens, messages: restored.messages.length,
      straight: straight.choices[0].message.content, again: again.choices[0].message.content,
      cachedStraight: straight.usage.cached_prompt_tokens, cachedAgain: again.usage.cached_prompt_tokens,
    };
  },

  async unload() {
    await engine?.unload();
  },
};

export type EngineTest = typeof engineTest;
declare global {
  interface Window {
    engineTest: EngineTest;
  }
}
window.engineTest = engineTest;
