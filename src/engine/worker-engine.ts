// The same Engine, running in a Web Worker (src/worker.ts): the page stays responsive while the worker encodes GPU
// work and reads results back. createWorkerEngine gives the page a dedicated worker of its own; createSharedEngine
// connects to one SharedWorker that all of the site's tabs share (one model on the GPU, each tab its own
// conversation: engine-hub.ts). Calls go through comlink; a stream's chunks come back through a proxied callback
// and are queued into an AsyncIterable here; an AbortSignal becomes an abort(id) message.
import { proxy, releaseProxy, wrap, type Remote } from 'comlink';
import { WebGPUNotAvailableError } from '../errors.ts';
import type { HubInfo } from './engine-hub.ts';
import { registerErrorTransfer } from './error-transfer.ts';
import type { EngineHost } from './worker-host.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessage, Completions, Engine, EngineOptions } from './types.ts';

export type WorkerEngineOptions = Omit<EngineOptions, 'model' | 'device'> & { model: string };

class WorkerEngine implements Engine {
  readonly chat: { completions: Completions };
  private nextId = 0;

  constructor(protected readonly host: Remote<EngineHost>, private readonly close: () => void) {
    this.chat = { completions: { create: ((req: ChatCompletionRequest) => this.create(req)) as Completions['create'] } };
  }

  private async create(req: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    const id = this.nextId++;
    const { signal, onPrefillProgress, ...wire } = req;
    const progress = onPrefillProgress && proxy(onPrefillProgress);
    const onAbort = () => void this.host.abort(id);
    signal?.addEventListener('abort', onAbort);
    if (!req.stream) {
      try {
        if (signal?.aborted) onAbort();
        return await this.host.complete(id, wire, progress);
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    }
    try {
      await this.host.openStream(id, wire, progress);
    } catch (e) {
      signal?.removeEventListener('abort', onAbort);
      throw e;
    }
    if (signal?.aborted) onAbort();
    return this.chunks(id, () => signal?.removeEventListener('abort', onAbort));
  }

  private async *chunks(id: number, cleanup: () => void): AsyncGenerator<ChatCompletionChunk> {
    const queue: ChatCompletionChunk[] = [];
    let wake: (() => void) | undefined;
    let done = false, failed = false, error: unknown;
    const onChunk = proxy((c: ChatCompletionChunk) => {
      queue.push(c);
      wake?.();
    });
    this.host.pump(id, onChunk).then(
      () => { done = true; wake?.(); },
      (e) => { error = e; failed = done = true; wake?.(); },
    );
    try {
      while (true) {
        if (queue.length) { yield queue.shift()!; continue; }
        if (failed) throw error;
        if (done) return;
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
    } finally {
      if (!done) void this.host.abort(id); // the consumer stopped early: stop the worker too
      cleanup();
    }
  }

  interrupt(): Promise<void> {
    return this.host.interrupt();
  }

  resetChat(): Promise<void> {
    return this.host.resetChat();
  }

  saveSession(): Promise<Blob> {
    return this.host.saveSession();
  }

  restoreSession(session: Blob): Promise<{ messages: ChatMessage[]; tokens: number }> {
    return this.host.restoreSession(session);
  }

  async unload(): Promise<void> {
    await this.host.unload();
    this.host[releaseProxy]();
    this.close();
  }
}

/** Load the model with `host` (a worker's EngineHost) and return the Engine that talks to it. */
async function loadHost(host: Remote<EngineHost>, opts: WorkerEngineOptions, tabLock?: string): Promise<void> {
  const { onProgress, onWarning, ...rest } = opts;
  const model = new URL(opts.model, globalThis.location?.href).href;
  await host.load({ ...rest, model }, onProgress ? proxy(onProgress) : undefined, onWarning ? proxy(onWarning) : undefined, tabLock);
}

/**
 * Load the model in `worker` (a module worker running qwen3-next-webgpu's worker entry) and return an Engine
 * that talks to it. `model` is resolved against this page's URL, not the worker's.
 */
export async function createWorkerEngine(worker: Worker, opts: WorkerEngineOptions): Promise<Engine> {
  registerErrorTransfer();
  const host = wrap<EngineHost>(worker);
  await loadHost(host, opts);
  return new WorkerEngine(host, () => worker.terminate());
}

/** An Engine from createSharedEngine: where it runs, and what it shares. */
export interface SharedEngine extends Engine {
  /** 'shared': in the site's SharedWorker; 'dedicated': in a worker of this page's own (see fallbackReason). */
  readonly mode: 'shared' | 'dedicated';
  /** Why the engine runs in a dedicated worker instead (no SharedWorker, or no WebGPU inside one). */
  readonly fallbackReason?: string;
  /** Pages connected to the engine now, and how many times its worker loaded the model onto the GPU. */
  info(): Promise<HubInfo>;
}

class HostedEngine extends WorkerEngine implements SharedEngine {
  constructor(host: Remote<EngineHost>, close: () => void, readonly mode: 'shared' | 'dedicated', readonly fallbackReason?: string) {
    super(host, close);
  }

  info(): Promise<HubInfo> {
    return this.host.info();
  }
}

/**
 * One engine for all of this site's tabs: connect to the SharedWorker running `workerUrl` (qwen3-next-webgpu's worker
 * entry) for this model and options, loading the model there unless another tab already did. Tabs' requests run in
 * turn, each tab with its own conversation (and its own saveSession / restoreSession); a tab that closes mid-reply
 * frees its turn. Where SharedWorker, or WebGPU inside one, is missing, the engine runs in a dedicated worker of this
 * page instead, and `mode` / `fallbackReason` say so. `opts.onProgress` hears the load, or one 'ready' report when
 * another tab had loaded the model already.
 */
export async function createSharedEngine(workerUrl: string | URL, opts: WorkerEngineOptions): Promise<SharedEngine> {
  registerErrorTransfer();
  const dedicated = async (reason: string) => {
    const worker = new Worker(workerUrl, { type: 'module' });
    const host = wrap<EngineHost>(worker);
    try {
      await loadHost(host, opts);
    } catch (e) {
      worker.terminate();
      throw e;
    }
    return new HostedEngine(host, () => worker.terminate(), 'dedicated', reason);
  };
  if (typeof SharedWorker === 'undefined') return dedicated('this browser has no SharedWorker');
  // Tabs share a worker when they name the same one: the same model and options load one engine.
  const { onProgress: _p, onWarning: _w, ...key } = opts;
  const worker = new SharedWorker(workerUrl, { type: 'module', name: `qwen3-next-webgpu ${JSON.stringify({ ...key, model: new URL(opts.model, globalThis.location?.href).href })}` });
  const host = wrap<EngineHost>(worker.port);
  // A Web Lock held while this page lives: the worker asks for it too and is granted it once the page is gone.
  const tabLock = `qwen3-next-webgpu tab ${crypto.randomUUID()}`;
  let release = () => {};
  if (navigator.locks) await new Promise<void>((held) => void navigator.locks.request(tabLock, () => { held(); return new Promise<void>((r) => (release = r)); }));
  const close = () => {
    release();
    worker.port.close();
  };
  try {
    await new Promise<void>((resolve, reject) => {
      worker.addEventListener('error', () => reject(new Error('the SharedWorker failed to start')), { once: true });
      loadHost(host, opts, tabLock).then(resolve, reject);
    });
  } catch (e) {
    close();
    host[releaseProxy]();
    if (e instanceof WebGPUNotAvailableError) return dedicated(`WebGPU is not available in a SharedWorker here (${e.message})`);
    if (e instanceof Error && e.message === 'the SharedWorker failed to start') return dedicated('the SharedWorker failed to start (module workers in SharedWorker unsupported?)');
    throw e;
  }
  return new HostedEngine(host, close, 'shared');
}
