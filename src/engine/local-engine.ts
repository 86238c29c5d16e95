// The engine in this thread: one request at a time (a queue), each one a turn of the conversation
// (conversation.ts decides how much of the prompt is already in the GPU state).
//
// Abort (request.signal or interrupt()) is checked after every token, so a reply stops within one token. The
// state then keeps the partial turn: the tokens run so far stay in the conversation, and a next request that
// extends them continues from there; one that does not (e.g. a regenerate) resumes from the turn's snapshot.
//
// A lost GPU device (driver reset, device.destroy()) fails the request in progress with DeviceLostError; the next
// request makes a new device and reloads the model first (load.ts reloadEngineParts: with `cache`, from IndexedDB),
// then answers from an empty conversation.
import { ContextLengthError, DeviceLostError, Qwen3NextError, SessionError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { expertStats } from '../cache/load.ts';
import { seededRandom } from '../model/generate.ts';
import type { Qwen3NextGpuModel } from '../model/model.ts';
import { decodeTokens, type TokenStreamOptions } from '../model/decode.ts';
import type { Qwen3NextSpeculativeDecoder, SpeculativeStats } from '../model/speculative.ts';
import { DecodeStream } from '../tokenizer/stream.ts';
import type { Qwen3Tokenizer } from '../tokenizer/tokenizer.ts';
import { Conversation } from './conversation.ts';
import { loadEngineParts, reloadEngineParts, type Loaded } from './load.ts';
import { ReplyText } from './reply.ts';
import { decodeSession, encodeSession } from './session.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessage, Completions, CompletionUsage, Engine, EngineOptions, FinishReason, SpeculativeUsage } from './types.ts';

const DEFAULT_MAX_TOKENS = 256;

/** usage.speculative: the decoder's counts since `before`; none when the reply decoded plainly (a repetition penalty). */
function speculativeUsage(spec: Qwen3NextSpeculativeDecoder, before: SpeculativeStats | undefined, replyTokens: number): SpeculativeUsage {
  const s = spec.stats, b = before ?? s;
  const rounds = s.rounds - b.rounds, drafted = s.drafted - b.drafted, accepted = s.accepted - b.accepted;
  return {
    draft_tokens: spec.opts.draftTokens, rounds, drafted, accepted,
    acceptance_rate: drafted > 0 ? accepted / drafted : 0,
    mean_accepted_length: rounds > 0 ? (rounds + accepted) / rounds : 0,
    plain_tokens: before ? s.plain - b.plain : replyTokens,
  };
}
const now = () => globalThis.performance.now();

export class LocalEngine implements Engine {
  readonly chat: { completions: Completions };
  private parts!: Loaded; // replaced after a lost device
  private conversation!: Conversation;
  private messages: ChatMessage[] = []; // the last request's messages and its reply (a saved session's)
  private eos!: Set<number>;
  private queue: Promise<unknown> = Promise.resolve();
  private current?: AbortController;
  private unloaded = false;
  private lost?: string; // why the device was lost, until the next request reloads the model

  private constructor(private readonly opts: EngineOptions, parts: Loaded) {
    this.chat = { completions: { create: ((req: ChatCompletionRequest) => this.create(req)) as Completions['create'] } };
    this.use(parts);
  }

  static async load(opts: EngineOptions): Promise<LocalEngine> {
    return new LocalEngine(opts, await loadEngineParts(opts));
  }

  private get ctx(): GpuContext {
    return this.parts.ctx;
  }

  private get model(): Qwen3NextGpuModel {
    return this.parts.model;
  }

  private get tokenizer(): Qwen3Tokenizer {
    return this.parts.tokenizer;
  }

  /** Serve requests with `parts`: at load, and after a reload onto a new device. */
  private use(parts: Loaded): void {
    this.parts = parts;
    const spec = parts.speculative;
    this.conversation = new Conversation(parts.model, spec && ((ids, progress) => spec.prefill(ids, progress)));
    this.eos = new Set([...parts.tokenizer.eosTokenIds, ...parts.model.config.eosTokenIds]);
    this.lost = undefined;
    const device = parts.ctx.device;
    device.lost.then((info) => {
      if (!this.unloaded && this.parts.ctx.device === device) this.lost = info.message || info.reason;
    });
  }

  /** After a lost device: the model again on a new one (load.ts reloadEngineParts), the conversation empty. */
  private async recover(): Promise<void> {
    const lost = this.parts;
    lost.stopFill?.(); // the reload starts its own
    this.use(await reloadEngineParts(this.opts, lost));
    lost.model.cache.destroy();
  }

  /** `e` as DeviceLostError when the device was lost (its lost promise can settle just after the failed readback). */
  private async lostError(e: unknown, device: GPUDevice): Promise<unknown> {
    if (this.lost === undefined && !(e instanceof Qwen3NextError)) await Promise.race([device.lost, new Promise((r) => setTimeout(r, 500))]);
    if (this.lost === undefined || e instanceof DeviceLostError) return e;
    const next = this.opts.device ? 'Create a new engine with a new device' : 'The next request reloads the model onto a new device';
    return new DeviceLostError(`The GPU device was lost (${this.lost}) during this request. ${next}.`, { cause: e });
  }

  get maxContext(): number {
    return this.model.cache.maxT;
  }

  async create(req: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    if (req.stream) return this.stream(req);
    let completion: ChatCompletion | undefined;
    const reply = { reasoning: '', content: '' };
    for await (const chunk of this.stream(req)) {
      const c = chunk.choices[0];
      reply.reasoning += c.delta.reasoning_content ?? '';
      reply.content += c.delta.content ?? '';
      if (chunk.usage) {
        const message = { role: 'assistant' as const, content: reply.content, ...(reply.reasoning ? { reasoning_content: reply.reasoning } : {}) };
        completion = { id: chunk.id, object: 'chat.completion', created: chunk.created, model: chunk.model, choices: [{ index: 0, message, finish_reason: c.finish_reason! }], usage: chunk.usage };
      }
    }
    return completion!;
  }

  /**
   * The request's chunks (the last one has finish_reason and usage). Checks the request now, so an oversized one
   * throws here; the generator waits for the requests before it.
   */
  stream(req: ChatCompletionRequest): AsyncGenerator<ChatCompletionChunk> {
    if (this.unloaded) throw new Error('The engine was unloaded: create a new one with createEngine().');
    if (this.lost !== undefined && this.opts.device) throw new DeviceLostError(`The GPU device was lost (${this.lost}): create a new engine with a new device.`);
    const prompt = this.tokenizer.encodeChat(req.messages, { addGenerationPrompt: true, enableThinking: req.enable_thinking });
    const maxTokens = req.max_tokens ?? DEFAULT_MAX_TOKENS;
    if (prompt.length + maxTokens > this.maxContext) {
      throw new ContextLengthError(
        `The prompt (${prompt.length} tokens) plus max_tokens (${maxTokens}) exceeds the engine's context of ${this.maxContext} tokens. ` +
          'Lower max_tokens, drop earlier messages, or create the engine with a larger maxContext.',
        prompt.length + maxTokens,
        this.maxContext,
      );
    }
    return this.queued(req, prompt, maxTokens);
  }

  private async *queued(req: ChatCompletionRequest, prompt: number[], maxTokens: number): AsyncGenerator<ChatCompletionChunk> {
    const place = this.enqueue();
    try {
      await place.ready;
      yield* this.turn(req, prompt, maxTokens);
    } finally {
      place.release();
    }
  }

  /** A place in the request queue: `ready` once the requests before it are done (and a lost device replaced). */
  private enqueue(): { ready: Promise<void>; release: () => void } {
    const before = this.queue;
    let release!: () => void;
    this.queue = new Promise<void>((r) => (release = r));
    return { ready: before.then(() => (this.lost !== undefined ? this.recover() : undefined)), release };
  }

  private async *turn(req: ChatCompletionRequest, prompt: number[], maxTokens: number): AsyncGenerator<ChatCompletionChunk> {
    const abort = (this.current = new AbortController());
    const onAbort = () => abort.abort();
    req.signal?.addEventListener('abort', onAbort);
    if (req.signal?.aborted) abort.abort();
    const head = { id: `chatcmpl-${Math.random().toString(36).slice(2, 12)}`, object: 'chat.completion.chunk' as const, created: Math.floor(Date.now() / 1000), model: this.parts.name };
    const chunk = (delta: ChatCompletionChunk['choices'][0]['delta'], finish: FinishReason | null = null, usage?: CompletionUsage): ChatCompletionChunk => ({
      ...head, choices: [{ index: 0, delta, finish_reason: finish }], ...(usage ? { usage } : {}),
    });
    const stops = req.stop === undefined ? [] : (Array.isArray(req.stop) ? req.stop : [req.stop]).filter((s) => s !== '');
    const text = new ReplyText(stops);
    const decoder = new DecodeStream(this.tokenizer, { skipSpecialTokens: true });
    const random = seededRandom(req.seed ?? Math.floor(Math.random() * 2 ** 32));
    const sampling = () => ({ temperature: req.temperature ?? 0, topK: req.top_k ?? 0, topP: req.top_p ?? 1, repetitionPenalty: req.repetition_penalty ?? 1, random: random() });
    const reply: number[] = [];
    const device = this.ctx.device;
    let finish: FinishReason = 'length';
    try {
      const t0 = now();
      const cached = this.conversation.resume(prompt);
      const onPrefill = req.onPrefillProgress;
      await this.conversation.prefill(prompt.slice(cached, -1), onPrefill && ((done, total) => onPrefill({ done, total })));
      this.conversation.snapshot();
      // A repetition penalty needs every id on the CPU before the step that uses it: it decodes plainly.
      const spec = (req.repetition_penalty ?? 1) === 1 && req.speculative !== false ? this.parts.speculative : undefined;
      const before = spec && { ...spec.stats };
      const o: TokenStreamOptions = { sampling, history: prompt.slice(), maxTokens, fed: (id) => this.conversation.consumed(id) };
      const last = prompt[prompt.length - 1];
      let t1 = 0;
      for await (const next of spec ? spec.tokens(last, o) : decodeTokens(this.model, last, o)) {
        if (reply.length === 0) {
          t1 = now();
          yield chunk({ role: 'assistant' });
        }
        if (this.lost !== undefined) throw new Error('the device was lost'); // the catch below makes it a DeviceLostError
        if (abort.signal.aborted) { finish = 'abort'; break; }
        reply.push(next);
        if (this.eos.has(next)) { finish = 'stop'; break; }
        text.push(decoder.step(next));
        if (text.stopped) { finish = 'stop'; break; }
        const d = text.delta(false);
        if (d.content || d.reasoning_content) yield chunk(d);
      }
      if (!text.stopped) text.push(decoder.flush());
      const t2 = now();
      const decoded = Math.max(0, reply.length - 1); // the first token came out of the prefill
      const stats = expertStats(this.model);
      const usage: CompletionUsage = {
        prompt_tokens: prompt.length,
        completion_tokens: reply.length,
        total_tokens: prompt.length + reply.length,
        prefill_tokens_per_s: (prompt.length - cached) / ((t1 - t0) / 1000),
        decode_tokens_per_s: decoded > 0 ? decoded / ((t2 - t1) / 1000) : 0,
        cached_prompt_tokens: cached,
        gpu_memory_bytes: this.ctx.allocatedBytes,
        context_tokens: this.maxContext,
        ...(stats ? { expert_cache: stats } : {}),
        ...(this.parts.speculative ? { speculative: speculativeUsage(this.parts.speculative, before, reply.length) } : {}),
      };
      const tail = text.delta(true);
      this.messages = [...req.messages, text.message()];
      yield chunk(tail, finish, usage);
    } catch (e) {
      this.messages = [];
      this.conversation.reset(); // a failed GPU step leaves the state unknown
      throw await this.lostError(e, device);
    } finally {
      req.signal?.removeEventListener('abort', onAbort);
      if (this.current === abort) this.current = undefined;
    }
  }

  async saveSession(): Promise<Blob> {
    return this.exclusive(async () => {
      const arrays = await this.model.cache.read();
      return encodeSession({ model: this.parts.modelId, messages: this.messages, ids: this.conversation.tokens }, arrays);
    });
  }

  async restoreSession(session: Blob): Promise<{ messages: ChatMessage[]; tokens: number }> {
    const { header, arrays } = await decodeSession(session);
    return this.exclusive(async () => {
      if (header.model !== this.parts.modelId) {
        throw new SessionError('this session was saved with another model (or another packing of it): load the model it was saved with, or start a new chat.');
      }
      if (header.ids.length >= this.maxContext) {
        throw new SessionError(`this session holds ${header.ids.length} tokens; this engine's context is ${this.maxContext}. Create the engine with a larger maxContext to continue it.`);
      }
      const want = this.model.cache.stateLengths(header.ids.length);
      if (arrays.length !== want.length || arrays.some((a, i) => a.length !== want[i])) throw new SessionError('the session\'s state does not match its model: the bytes are damaged. Start a new chat.');
      this.conversation.reset();
      this.model.cache.write(header.ids.length, arrays);
      this.conversation.restored(header.ids);
      this.messages = header.messages;
      return { messages: header.messages, tokens: header.ids.length };
    });
  }

  /** `body` between requests: after the one in progress, before the next. */
  private async exclusive<T>(body: () => Promise<T>): Promise<T> {
    if (this.unloaded) throw new Error('The engine was unloaded: create a new one with createEngine().');
    const place = this.enqueue();
    try {
      await place.ready;
      return await body();
    } finally {
      place.release();
    }
  }

  async interrupt(): Promise<void> {
    this.current?.abort();
  }

  async resetChat(): Promise<void> {
    await this.queue;
    this.conversation.reset();
  }

  async unload(): Promise<void> {
    this.current?.abort();
    await this.queue;
    this.unloaded = true;
    this.conversation.reset();
    this.model.cache.destroy();
    this.parts.stopFill?.();
    await this.parts.store?.close();
    if (this.parts.ownsDevice) this.ctx.device.destroy();
  }
}
