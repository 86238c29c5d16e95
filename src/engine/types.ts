// The OpenAI-compatible request and response shapes the engine speaks (the subset WebLLM's MLCEngine speaks too),
// so code written against `openai.chat.completions.create` runs against the engine with few changes.
import type { YarnOption } from '../config.ts';
import type { ModelStore } from '../store/store.ts';
import type { ChatMessage } from '../tokenizer/tokenizer.ts';

export type { ChatMessage };

export interface ChatCompletionRequest {
  messages: ChatMessage[];
  /** true: the call returns an AsyncIterable of chunks instead of one ChatCompletion. */
  stream?: boolean;
  /** Most new tokens (default 256). prompt + max_tokens must fit the engine's maxContext. */
  max_tokens?: number;
  /** 0 (the default) is greedy decoding. */
  temperature?: number;
  top_p?: number;
  /** Not in OpenAI's API; WebLLM and HF have it. 0: off. */
  top_k?: number;
  /** HF's repetition_penalty (1: off). */
  repetition_penalty?: number;
  seed?: number;
  /** Strings that end the reply (not included in it). */
  stop?: string | string[];
  /** Aborts the request within one token; the reply so far comes back with finish_reason 'abort'. */
  signal?: AbortSignal;
  /** Qwen3: false renders an empty <think></think> block (no reasoning). Unset: the template's default. */
  enable_thinking?: boolean;
  /** Not OpenAI's: false decodes this request without the engine's speculative decoding (EngineOptions.speculative). */
  speculative?: boolean;
  /**
   * Not OpenAI's: told as the GPU finishes each step of the prompt's prefill (steps of up to 256 tokens): `done` of
   * `total` new prompt tokens (the ones the conversation's state did not hold; the last one runs with the first reply
   * token). For a page to show progress on a long prompt; called from the worker too.
   */
  onPrefillProgress?: (p: { done: number; total: number }) => void;
}

export type FinishReason = 'stop' | 'length' | 'abort';

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** New prompt tokens over the prefill time (the cached ones are not counted). */
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
  /** Prompt tokens the model did not run again: the previous turn's state (or its snapshot) already held them. */
  cached_prompt_tokens: number;
  /** Not OpenAI's: src/cache/expert-cache.ts ExpertCacheStats (totals since load, per-layer and per-expert counts), when experts stream. */
  expert_cache?: unknown;
  /** Not OpenAI's: bytes of the GPU storage buffers the engine allocated (weights, expert slots, KV and recurrent state, scratch). */
  gpu_memory_bytes?: number;
  /** Not OpenAI's: the engine's context in tokens (maxContext); total_tokens of it are in use after this reply. */
  context_tokens?: number;
  /** Not OpenAI's: with `speculative`, this reply's rounds (one verify step each) and drafts. */
  speculative?: SpeculativeUsage;
}

export interface SpeculativeUsage {
  draft_tokens: number;
  /** Verify steps (each yields 1 + its accepted drafts). */
  rounds: number;
  drafted: number;
  accepted: number;
  /** accepted / drafted (0 when nothing was drafted). */
  acceptance_rate: number;
  /** Tokens a verify step yielded on average (1 + accepted drafts): the speed-up before the verify's extra cost. */
  mean_accepted_length: number;
  /** Tokens decoded without speculation: after it switched off for low acceptance, for a repetition penalty, or `speculative: false`. */
  plain_tokens: number;
}

export interface AssistantMessage {
  role: 'assistant';
  content: string;
  /** Qwen3's <think> block, when the reply has one. */
  reasoning_content?: string;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: [{ index: 0; message: AssistantMessage; finish_reason: FinishReason }];
  usage: CompletionUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: [{ index: 0; delta: { role?: 'assistant'; content?: string; reasoning_content?: string }; finish_reason: FinishReason | null }];
  /** On the last chunk only. */
  usage?: CompletionUsage;
}

export interface LoadProgress {
  /**
   * 'download': into IndexedDB (with `cache`); 'fetch': reading weights to the GPU; 'ready': the engine can serve
   * requests; 'fill' (with `backgroundExperts`, after 'ready'): routed experts stored in the background, loaded/total
   * in bytes of experts, until they are all stored.
   */
  phase: 'download' | 'fetch' | 'ready' | 'fill';
  loaded: number;
  total: number;
  text: string;
}

// ---- the Engine interface: createEngine (engine.ts) and createWorkerEngine (worker-engine.ts) both return one

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
  /**
   * The conversation as bytes, to continue after a reload (restoreSession): its messages (the last request's and the
   * reply), its tokens, and the model's state after them (every GDN layer's recurrent and conv state, the used part
   * of the K/V caches), with the model's identity and the format version. Waits for the request in progress.
   */
  saveSession(): Promise<Blob>;
  /**
   * Continue a saved conversation: the next request whose messages extend `messages` prefills only its new tokens,
   * and its reply is the one the conversation would have given without the reload. SessionError when the session
   * was saved with another model, by another format version, for more context than this engine has, or is no
   * session at all; the engine's conversation is then unchanged.
   */
  restoreSession(session: Blob): Promise<{ messages: ChatMessage[]; tokens: number }>;
}

export interface EngineOptions {
  /** A packed model folder's URL (manifest.json and the files it lists are fetched from there), or an open store. */
  model: string | ModelStore;
  /**
   * Tokens of context (prompt + reply) the engine allocates for (default: min(model's, 4096)). At most the positions
   * the model was made for (max_position_embeddings, 262,144 for Qwen3-Next; with YaRN, factor x the original):
   * past them loading fails with ContextLengthError.
   */
  maxContext?: number;
  /**
   * YaRN rope scaling whatever the model's config.json says: `true` = factor 4 over max_position_embeddings (the
   * Qwen3-Next model card's recipe for texts past 262,144 tokens, up to ~1M), `{ factor, originalMaxPositionEmbeddings }`,
   * `false` = off. Default: the config's. The model card advises turning it on only for long texts (it can cost a
   * little on short ones); a session saved with one setting does not restore into an engine with the other.
   */
  yarn?: YarnOption;
  /**
   * K/V cache precision: 'f16' (default) holds a token's keys and values in half the memory (24 KB a token at the 80B
   * shape instead of 48 KB) and halves what a decode step reads of them; 'f32' keeps them exact.
   */
  kvCache?: 'f16' | 'f32';
  /**
   * Prompt (prefill) matrix products of int4 weights: 'int8' (default where the browser's WGSL has packed 4x8 integer
   * dot products) quantizes the activations to int8 per group of 32 and multiplies on integer dot products, several
   * times the f32 rate; 'f32' multiplies exactly (slower prompts). Decoding is f32 either way.
   */
  prefillActivations?: 'int8' | 'f32';
  /**
   * Speculative decoding with the model's own multi-token-prediction layer (mtp.*; Qwen3-Next ships one): it drafts
   * `draftTokens` (1-3) tokens, one step of the model verifies them, and the reply is token for token the one plain
   * decoding gives (greedy or sampled, same seed). Faster when the drafts are often right (code, math, repetitive
   * text); a reply whose acceptance stays under `minAcceptance` (default 0.25) goes on without it. Requests with a
   * repetition_penalty, or `speculative: false`, decode plainly. A model without an MTP layer fails to load with
   * ConfigError. Default: off.
   */
  speculative?: { draftTokens: number; minAcceptance?: number };
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
  /**
   * RAM tier in front of the store when experts stream (default: an eighth of navigator.deviceMemory, 128 MiB to
   * 1 GiB; 256 MiB where the browser does not say). usage.expert_cache reports its budget and the misses it served.
   */
  ramCacheBytes?: number;
  /**
   * Opt-in and approximate, when experts stream: a token keeps its `exact` best routed experts; each other pick that
   * is not on the GPU is replaced by the best-scoring expert that is (its weight renormalised as the router's), so a
   * token uploads at most `exact` experts a layer. Faster on a small expertCacheBytes, but another model: brown-tiny's
   * perplexity and greedy agreement for each `exact` are in BENCHMARKS.md. usage.expert_cache.totals.replaced counts
   * the picks it changed. Default off (exact routing).
   */
  cacheAwareRouting?: { exact: number };
  /**
   * Keep the model in this browser's IndexedDB (browser only, `model` a URL): the first load downloads it record by
   * record with progress (phase 'download', resumable, every record verified by SHA-256); later loads read it from
   * there and work offline. Default false: weights are read over HTTP each time.
   */
  cache?: boolean;
  /**
   * With `cache`: be ready once the tokenizer and the dense weights are stored (~5% of the 80B model), and store the
   * routed experts in the background (progress phase 'fill'). An expert not stored yet when a token needs it is
   * fetched then; offline, such a request fails with ExpertUnavailableError (send it again once back online). Until
   * every expert is stored, experts stream through the expert cache (usage.expert_cache); the next load after the
   * fill runs as configured. Default false: the whole model is stored before the engine is ready.
   */
  backgroundExperts?: boolean;
  /**
   * With backgroundExperts, offline before the fill is done: a reply that needs an expert not stored yet fails with
   * ExpertUnavailableError ('error', the default), or takes the best-scoring stored expert in its place
   * ('substitute': the reply goes on, approximately; usage.expert_cache.totals counts the experts it could not
   * fetch, `unreachable`, and the picks it replaced). Nothing changes while the experts can be fetched.
   */
  unavailableExperts?: 'error' | 'substitute';
  /**
   * Check every weight record's SHA-256 while loading (slower). Tokenizer files are always checked, and so is every
   * record read from IndexedDB (`cache`): a damaged one is fetched again (onWarning).
   */
  verify?: boolean;
}
