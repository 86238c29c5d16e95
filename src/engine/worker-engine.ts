// The same Engine, running in a dedicated Web Worker (src/worker.ts): the page stays responsive while the worker
// encodes GPU work and reads results back. Calls go through comlink; a stream's chunks come back through a
// proxied callback and are queued into an AsyncIterable here; an AbortSignal becomes an abort(id) message.
import { proxy, releaseProxy, wrap, type Remote } from 'comlink';
import { registerErrorTransfer } from './error-transfer.ts';
import type { EngineHost } from './worker-host.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessage, Completions, Engine, EngineOptions } from './types.ts';

export type WorkerEngineOptions = Omit<EngineOptions, 'model' | 'device'> & { model: string };

class WorkerEngine implements Engine {
  readonly chat: { completions: Completions };
  private nextId = 0;

  constructor(private readonly host: Remote<EngineHost>, private readonly worker: Worker) {
    this.chat = { completions: { create: ((req: ChatCompletionRequest) => this.create(req)) as Completions['create'] } };
  }

  private async create(req: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    const id = this.nextId++;
    const { signal, ...wire } = req;
    const onAbort = () => void this.host.abort(id);
    signal?.addEventListener('abort', onAbort);
    if (!req.stream) {
      try {
        if (signal?.aborted) onAbort();
        return await this.host.complete(id, wire);
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    }
    try {
      await this.host.openStream(id, wire);
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
    this.worker.terminate();
  }
}

/**
 * Load the model in `worker` (a module worker running qwen3-next-webgpu's worker entry) and return an Engine
 * that talks to it. `model` is resolved against this page's URL, not the worker's.
 */
export async function createWorkerEngine(worker: Worker, opts: WorkerEngineOptions): Promise<Engine> {
  registerErrorTransfer();
  const host = wrap<EngineHost>(worker);
  const { onProgress, onWarning, ...rest } = opts;
  const model = new URL(opts.model, globalThis.location?.href).href;
  await host.load({ ...rest, model }, onProgress ? proxy(onProgress) : undefined, onWarning ? proxy(onWarning) : undefined);
  return new WorkerEngine(host, worker);
}
