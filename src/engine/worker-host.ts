// The worker side of createWorkerEngine: a LocalEngine behind comlink. Requests carry an id instead of an
// AbortSignal (signals do not cross postMessage); a streamed request is opened (checked, so ContextLengthError
// reaches the caller of create) and then pumped into a callback proxied from the page.
import { expose } from 'comlink';
import { registerErrorTransfer } from './error-transfer.ts';
import { LocalEngine } from './local-engine.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessage, EngineOptions, LoadProgress } from './types.ts';

export type WireRequest = Omit<ChatCompletionRequest, 'signal'>;
export type WireOptions = Omit<EngineOptions, 'model' | 'device' | 'onProgress' | 'onWarning'> & { model: string };

export class EngineHost {
  private engine?: LocalEngine;
  private readonly aborts = new Map<number, AbortController>();
  private readonly open = new Map<number, AsyncGenerator<ChatCompletionChunk>>();

  async load(opts: WireOptions, onProgress?: (p: LoadProgress) => void, onWarning?: (message: string) => void): Promise<void> {
    // A proxied callback has its own MessagePort, so its calls are not ordered with load's reply: wait for the
    // last report to land (they are ordered among themselves), or 'ready' could arrive after load resolved.
    let last: unknown;
    const progress = onProgress && ((p: LoadProgress) => { last = onProgress(p); });
    this.engine = await LocalEngine.load({ ...opts, onProgress: progress, onWarning });
    await last;
  }

  async complete(id: number, req: WireRequest): Promise<ChatCompletion> {
    try {
      return (await this.loaded().create({ ...req, stream: false, signal: this.signal(id) })) as ChatCompletion;
    } finally {
      this.aborts.delete(id);
    }
  }

  async openStream(id: number, req: WireRequest): Promise<void> {
    try {
      this.open.set(id, this.loaded().stream({ ...req, signal: this.signal(id) }));
    } catch (e) {
      this.aborts.delete(id);
      throw e;
    }
  }

  /** Send every chunk to `onChunk` (in order: postMessage keeps it), resolving after the last. */
  async pump(id: number, onChunk: (c: ChatCompletionChunk) => void): Promise<void> {
    let delivered: unknown;
    try {
      for await (const c of this.open.get(id)!) delivered = onChunk(c);
      // The callback's calls and this method's reply travel on different ports, so the reply could overtake the
      // last chunks: it waits until the page has acknowledged the last one (and with it, in port order, all others).
      await delivered;
    } finally {
      this.open.delete(id);
      this.aborts.delete(id);
    }
  }

  abort(id: number): void {
    this.aborts.get(id)?.abort();
  }

  interrupt(): Promise<void> {
    return this.loaded().interrupt();
  }

  resetChat(): Promise<void> {
    return this.loaded().resetChat();
  }

  saveSession(): Promise<Blob> {
    return this.loaded().saveSession();
  }

  restoreSession(session: Blob): Promise<{ messages: ChatMessage[]; tokens: number }> {
    return this.loaded().restoreSession(session);
  }

  async unload(): Promise<void> {
    await this.engine?.unload();
    this.engine = undefined;
  }

  private signal(id: number): AbortSignal {
    const c = new AbortController();
    this.aborts.set(id, c);
    return c.signal;
  }

  private loaded(): LocalEngine {
    if (!this.engine) throw new Error('The worker engine is not loaded (or was unloaded): create it with createWorkerEngine().');
    return this.engine;
  }
}

/** The whole worker entry: `exposeEngine()` in a module worker. */
export function exposeEngine(): void {
  registerErrorTransfer();
  expose(new EngineHost());
}
