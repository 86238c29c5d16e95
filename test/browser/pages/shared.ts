// The shared-engine page: exposes `window.sharedTest` for test/browser/shared-engine.test.ts. Several tabs of this
// page connect to one engine in a SharedWorker (src/worker.ts, served by Vite), which loads the packed brown-tiny
// from the dev server's /models/ over HTTP.
import { createSharedEngine, type ChatMessage, type SharedEngine } from '../../../src/index.ts';

let engine: SharedEngine | undefined;
const WORKER = new URL('../../../src/worker.ts', import.meta.url);
const history: ChatMessage[] = [];

const sharedTest = {
  /** Connect (with `noSharedWorker`, as in a browser without SharedWorker). */
  async load(model: string, noSharedWorker = false) {
    if (noSharedWorker) Reflect.deleteProperty(globalThis, 'SharedWorker');
    const progress: string[] = [];
    const t0 = performance.now();
    engine = await createSharedEngine(WORKER, { model, maxContext: 256, onProgress: (p) => progress.push(p.phase) });
    return { seconds: (performance.now() - t0) / 1000, progress, mode: engine.mode, fallbackReason: engine.fallbackReason, info: await engine.info() };
  },

  info() {
    return engine!.info();
  },

  /** The next turn of this tab's conversation, streamed; `onContent` marks the page once `marks` content pieces came. */
  async say(content: string, maxTokens: number, marks = 0) {
    history.push({ role: 'user', content });
    const chunks = await engine!.chat.completions.create({ messages: history, max_tokens: maxTokens, stream: true });
    let text = '', pieces = 0, finish: string | null = null, usage: { cached_prompt_tokens: number } | undefined;
    for await (const c of chunks) {
      text += c.choices[0].delta.content ?? '';
      if (c.choices[0].delta.content && ++pieces === marks) (window as unknown as { marked: boolean }).marked = true;
      finish = c.choices[0].finish_reason;
      usage = c.usage;
    }
    history.push({ role: 'assistant', content: text });
    return { text, finish, cached: usage!.cached_prompt_tokens };
  },

  async resetChat() {
    history.length = 0;
    await engine!.resetChat();
  },

  async unload() {
    await engine?.unload();
    engine = undefined;
  },
};

export type SharedTest = typeof sharedTest;
declare global {
  interface Window {
    sharedTest: SharedTest;
  }
}
window.sharedTest = sharedTest;
