// The Engine a web page embeds: WebLLM's shape (`engine.chat.completions.create(...)`, OpenAI's request and
// response objects), in the page's thread (createEngine) or in a dedicated Web Worker (createWorkerEngine in
// worker-engine.ts) behind the same interface.
import type { ModelStore } from '../store/store.ts';
import { LocalEngine } from './local-engine.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, LoadProgress } from './types.ts';

export interface Completions {
  create(request: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
  create(request: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
  create(request: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
}

export interface Engine {
  chat: { completions: Completions };
  /** Stop the request in progress within one token (it ends with finish_reason 'abort'). */
  interrupt(): Promise<void>;
  /** Forget the conversation: the next request prefills from an empty state. */
  resetChat(): Promise<void>;
  /** Free the GPU memory; the engine serves no more requests. */
  unload(): Promise<void>;
}

export interface EngineOptions {
  /** A packed model folder's URL (manifest.json and the files it lists are fetched from there), or an open store. */
  model: string | ModelStore;
  /** Tokens of context (prompt + reply) the engine allocates for (default: min(model's, 4096)). */
  maxContext?: number;
  /** Loading progress; also while the engine reloads the model onto a new device after the GPU device was lost. */
  onProgress?: (p: LoadProgress) => void;
  /**
   * Problems the engine recovered from on its own, as one sentence each: today, a record of the IndexedDB copy
   * (`cache`) that failed its SHA-256 check at load and was fetched again from `model` (alone). Default: console.warn.
   */
  onWarning?: (message: string) => void;
  /**
   * A WebGPU device to run on (Node: requestNodeDevice()); default: one from navigator.gpu. When the device is lost,
   * the request in progress rejects with DeviceLostError; an engine that made its own device makes a new one and
   * reloads the model on the next request (with `cache`, from IndexedDB), one given here cannot be replaced.
   */
  device?: GPUDevice;
  /**
   * GPU bytes for routed experts (default: all resident). Below the model's total, experts stream from the store
   * through the expert cache (src/cache), the store stays open until unload(), and usage.expert_cache reports it.
   */
  expertCacheBytes?: number;
  /** RAM tier in front of the store when experts stream (default 256 MiB). */
  ramCacheBytes?: number;
  /**
   * Keep the model in this browser's IndexedDB (browser only, `model` a URL): the first load downloads it record by
   * record with progress (phase 'download', resumable, every record verified by SHA-256); later loads read it from
   * there and work offline. Default false: weights are read over HTTP each time.
   */
  cache?: boolean;
  /**
   * Check every weight record's SHA-256 while loading (slower). Tokenizer files are always checked, and so is every
   * record read from IndexedDB (`cache`): a damaged one is fetched again (onWarning).
   */
  verify?: boolean;
}

/** Load a model and return an engine running in this thread. */
export async function createEngine(opts: EngineOptions): Promise<Engine> {
  return LocalEngine.load(opts);
}
