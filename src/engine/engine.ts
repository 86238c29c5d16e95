// The Engine a web page embeds: WebLLM's shape (`engine.chat.completions.create(...)`, OpenAI's request and
// response objects), in the page's thread (createEngine) or in a dedicated Web Worker (createWorkerEngine in
// worker-engine.ts) behind the same interface (types.ts).
import { LocalEngine } from './local-engine.ts';
import type { Engine, EngineOptions } from './types.ts';

/** Load a model and return an engine running in this thread. */
export async function createEngine(opts: EngineOptions): Promise<Engine> {
  return LocalEngine.load(opts);
}
