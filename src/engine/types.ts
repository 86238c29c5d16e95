// The OpenAI-compatible request and response shapes the engine speaks (the subset WebLLM's MLCEngine speaks too),
// so code written against `openai.chat.completions.create` runs against the engine with few changes.
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
  /** 'download': into IndexedDB (with `cache`); 'fetch': reading weights to the GPU; 'ready': the engine can serve requests. */
  phase: 'download' | 'fetch' | 'ready';
  loaded: number;
  total: number;
  text: string;
}
