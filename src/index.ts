// qwen3-next-webgpu: Qwen3-Next on WebGPU. The package entry for web pages: an OpenAI-style chat engine in this
// thread (createEngine), in a Web Worker of the page (createWorkerEngine) or in one SharedWorker for all of the
// site's tabs (createSharedEngine), both workers running the worker entry (src/worker.ts).
export { createEngine } from './engine/engine.ts';
export { createWorkerEngine, createSharedEngine, type WorkerEngineOptions, type SharedEngine } from './engine/worker-engine.ts';
export type { HubInfo } from './engine/engine-hub.ts';
export { HttpStore } from './engine/http-store.ts';
export type * from './engine/types.ts';
export * from './errors.ts';
export type { ModelStore } from './store/store.ts';
export { PackedStore, storeSource } from './store/store.ts';
export { Qwen3Tokenizer } from './tokenizer/tokenizer.ts';
export { deleteStoredModel, listStoredModels, type StoredModelInfo } from './store/browser-models.ts';
export { storeSession, listStoredSessions, loadStoredSession, renameStoredSession, deleteStoredSession, type StoredSessionInfo } from './store/browser-sessions.ts';
