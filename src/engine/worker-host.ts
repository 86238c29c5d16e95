// The worker side of createWorkerEngine and createSharedEngine: one EngineHost per connected page (the one page of a
// dedicated worker, each tab of a SharedWorker), all of a worker's hosts sharing one EngineHub (engine-hub.ts: one
// model on the GPU, requests in turn, a conversation per page). Requests carry an id instead of an AbortSignal
// (signals do not cross postMessage); a streamed request is opened (checked, so ContextLengthError reaches the
// caller of create) and then pumped into a callback proxied from the page.
import { expose } from 'comlink';
import { registerErrorTransfer } from './error-transfer.ts';
import { EngineHub, type HubClient, type HubInfo } from './engine-hub.ts';
import type { LocalEngine } from './local-engine.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessage, EngineOptions, LoadProgress } from './types.ts';

export type WireRequest = Omit<ChatCompletionRequest, 'signal' | 'onPrefillProgress'>;
export type WireOptions = Omit<EngineOptions, 'model' | 'device' | 'onProgress' | 'onWarning'> & { model: string };

export class EngineHost {
  private client?: HubClient;
  private readonly aborts = new Map<number, AbortController>();
  private readonly open = new Map<number, AsyncGenerator<ChatCompletionChunk>>();

  constructor(private readonly hub: EngineHub) {}

  /**
   * Join the worker's engine, loading the model unless another page already did. `tabLock`: the name of a Web Lock
   * the page holds while it lives; when the lock is granted here, the page is gone (closed, reloaded, crashed) and
   * leaves the engine as unload() would.
   */
  async load(opts: WireOptions, onProgress?: (p: LoadProgress) => void, onWarning?: (message: string) => void, tabLock?: string): Promise<void> {
    // A proxied callback has its own MessagePort, so its calls are not ordered with load's reply: wait for the
    // last report to land (they are ordered among themselves), or 'ready' could arrive after load resolved.
    let last: unknown;
    const progress = onProgress && ((p: LoadProgress) => { last = onProgress(p); });
    const client = (this.client = await this.hub.join(opts, { onProgress: progress, onWarning }));
    if (tabLock) void globalThis.navigator?.locks?.request(tabLock, () => this.leave(client));
    await last;
  }

  info(): HubInfo {
    return this.hub.info();
  }

  /** `onPrefillProgress`: the request's callback, proxied from the page (functions do not cross postMessage). */
  complete(id: number, req: WireRequest, onPrefillProgress?: ChatCompletionRequest['onPrefillProgress']): Promise<ChatCompletion> {
    const signal = this.signal(id);
    return this.run((e) => e.create({ ...req, stream: false, signal, onPrefillProgress }) as Promise<ChatCompletion>).finally(() => this.aborts.delete(id));
  }

  async openStream(id: number, req: WireRequest, onPrefillProgress?: ChatCompletionRequest['onPrefillProgress']): Promise<void> {
    const engine = this.hub.engineFor(this.joined()); // the engine's own checks (context length) run now, the turn when pumped
    try {
      this.open.set(id, engine.stream({ ...req, signal: this.signal(id), onPrefillProgress }));
    } catch (e) {
      this.aborts.delete(id);
      throw e;
    }
  }

  /** Send every chunk to `onChunk` (in order: postMessage keeps it), resolving after the last. */
  async pump(id: number, onChunk: (c: ChatCompletionChunk) => void): Promise<void> {
    let delivered: unknown;
    try {
      await this.run(async () => { for await (const c of this.open.get(id)!) delivered = onChunk(c); });
      // The callback's calls and this method's reply travel on different ports, so the reply could overtake the
      // last chunks: it waits until the page has acknowledged the last one (and with it, in port order, all others).
      // Outside the turn: a page that is gone never acknowledges, and must not hold up the other pages.
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
    return this.hub.interrupt(this.joined());
  }

  resetChat(): Promise<void> {
    return this.hub.reset(this.joined());
  }

  saveSession(): Promise<Blob> {
    return this.run((e) => e.saveSession());
  }

  restoreSession(session: Blob): Promise<{ messages: ChatMessage[]; tokens: number }> {
    return this.hub.run(this.joined(), (e) => e.restoreSession(session), true);
  }

  async unload(): Promise<void> {
    if (this.client) await this.leave(this.client);
  }

  private async leave(client: HubClient): Promise<void> {
    for (const c of this.aborts.values()) c.abort();
    await this.hub.leave(client);
  }

  private run<T>(body: (engine: LocalEngine) => Promise<T>): Promise<T> {
    return this.hub.run(this.joined(), body);
  }

  private signal(id: number): AbortSignal {
    const c = new AbortController();
    this.aborts.set(id, c);
    return c.signal;
  }

  private joined(): HubClient {
    if (!this.client || this.client.gone) throw new Error('The worker engine is not loaded (or was unloaded): create it with createWorkerEngine() or createSharedEngine().');
    return this.client;
  }
}

/**
 * The whole worker entry, for both kinds of worker: in a SharedWorker every connecting page gets its own EngineHost
 * over its port, all on one hub; in a dedicated worker the page gets the one host.
 */
export function exposeEngine(): void {
  registerErrorTransfer();
  const hub = new EngineHub();
  const scope = globalThis as unknown as { onconnect?: unknown };
  if ('onconnect' in scope) {
    scope.onconnect = (e: MessageEvent) => expose(new EngineHost(hub), e.ports[0]);
  } else {
    expose(new EngineHost(hub));
  }
}
