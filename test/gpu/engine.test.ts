// The in-thread engine (src/engine) on Dawn/SwiftShader over the packed int4 brown-tiny in public/models:
// its greedy reply to golden prompt 0 equals `q3n generate --model public/models/brown-tiny-q4 --chat`, streaming
// and non-streaming agree, multi-turn requests prefill only their new tokens, a regenerate resumes from the
// turn's snapshot, stop strings and abort end a reply, and an oversized request fails with ContextLengthError.
// One engine serves every test (SwiftShader is slow), so the tests run in order and build on each other's state.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from '../../src/engine/engine.ts';
import type { Engine } from '../../src/engine/types.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatMessage, LoadProgress } from '../../src/engine/types.ts';
import { ContextLengthError, SessionError } from '../../src/errors.ts';
import { decodeSession, encodeSession } from '../../src/engine/session.ts';
import { NodeFileStore } from '../../src/store/node.ts';
import { getTestDevice, withGpuErrors } from '../helpers/gpu.ts';

const MODEL = 'public/models/brown-tiny-q4';
const PROMPT = 'The jury said it did find that many of the voters were not qualified.';
const REPLY = "These weren't it??"; // q3n generate --model public/models/brown-tiny-q4 --chat --prompt "$PROMPT"
const user = (content: string): ChatMessage => ({ role: 'user', content });

async function collect(stream: AsyncIterable<ChatCompletionChunk>) {
  const chunks: ChatCompletionChunk[] = [];
  for await (const c of stream) chunks.push(c);
  return { chunks, text: chunks.map((c) => c.choices[0].delta.content ?? '').join(''), last: chunks[chunks.length - 1] };
}

describe('Engine in this thread (Node, packed brown-tiny int4)', () => {
  let engine: Engine;
  let first: ChatCompletion;
  const progress: LoadProgress[] = [];
  const log = (what: string, c: { usage?: ChatCompletion['usage'] }) =>
    console.log(`[engine] ${what}: ${JSON.stringify(c.usage, (_, v) => (typeof v === 'number' ? Math.round(v * 10) / 10 : v))}`);

  beforeAll(async () => {
    const t0 = performance.now();
    const store = await NodeFileStore.open(MODEL);
    engine = await createEngine({ model: store, device: await getTestDevice(), maxContext: 256, onProgress: (p) => progress.push(p) });
    await store.close(); // a store passed in stays the caller's: every weight is on the GPU now
    console.log(`[engine] loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  });
  afterAll(() => engine?.unload());

  it('reports load progress up to ready', () => {
    expect(progress.length).toBeGreaterThan(10);
    expect(progress.at(-1)).toMatchObject({ phase: 'ready' });
    expect(progress.at(-2)!.loaded).toBe(progress.at(-2)!.total);
  });

  it('greedy reply to golden prompt 0 equals q3n generate --chat', () =>
    withGpuErrors(async () => {
      const progress: { done: number; total: number }[] = [];
      first = await engine.chat.completions.create({ messages: [user(PROMPT)], max_tokens: 48, onPrefillProgress: (p) => progress.push(p) });
      log('turn 1', first);
      await new Promise((r) => setTimeout(r, 10)); // the last report lands when the GPU has run the step
      expect(progress).toEqual([{ done: first.usage.prompt_tokens - 1, total: first.usage.prompt_tokens - 1 }]); // one step of 256
      expect(first.object).toBe('chat.completion');
      expect(first.choices[0].message).toEqual({ role: 'assistant', content: REPLY });
      expect(first.choices[0].finish_reason).toBe('stop');
      const u = first.usage;
      expect(u.cached_prompt_tokens).toBe(0);
      expect(u.context_tokens).toBe(256); // maxContext
      expect(u.total_tokens).toBe(u.prompt_tokens + u.completion_tokens);
      expect(u.prefill_tokens_per_s).toBeGreaterThan(0);
      expect(u.decode_tokens_per_s).toBeGreaterThan(0);
    }));

  it('streams the same reply, resuming the regenerated turn from its snapshot', () =>
    withGpuErrors(async () => {
      const { chunks, text, last } = await collect(await engine.chat.completions.create({ messages: [user(PROMPT)], max_tokens: 48, stream: true }));
      log('regenerate (stream)', last);
      expect(chunks[0].choices[0].delta.role).toBe('assistant');
      expect(chunks.length).toBeGreaterThan(3);
      expect(text).toBe(first.choices[0].message.content);
      expect(last.choices[0].finish_reason).toBe('stop');
      // The live state holds turn 1's reply, which this prompt does not extend: only the snapshot taken after
      // the prompt's prefill fits, so just the prompt's last token runs.
      expect(last.usage!.cached_prompt_tokens).toBe(first.usage.prompt_tokens - 1);
    }));

  it('stop strings end the reply before them', () =>
    withGpuErrors(async () => {
      const r = await engine.chat.completions.create({ messages: [user(PROMPT)], max_tokens: 48, stop: ['it?', 'zzz'] });
      expect(r.choices[0].message.content).toBe("These weren't ");
      expect(r.choices[0].finish_reason).toBe('stop');
    }));

  it('max_tokens ends the reply with finish_reason length', () =>
    withGpuErrors(async () => {
      const r = await engine.chat.completions.create({ messages: [user(PROMPT)], max_tokens: 2 });
      expect(r.usage.completion_tokens).toBe(2);
      expect(r.choices[0].finish_reason).toBe('length');
      expect(REPLY.startsWith(r.choices[0].message.content)).toBe(true);
    }));

  for (const how of ['signal', 'interrupt()'] as const) {
    it(`abort by ${how} after 2 tokens stops within one token${how === 'signal' ? '' : ', and the next request gets the full reply'}`, () =>
      withGpuErrors(async () => {
        const controller = new AbortController();
        // The golden prompt again: it resumes from the snapshot, so only the reply's tokens cost time.
        const stream = await engine.chat.completions.create({ messages: [user(PROMPT)], max_tokens: 40, stream: true, signal: controller.signal });
        let pieces = 0;
        let last!: ChatCompletionChunk;
        for await (const c of stream) {
          last = c;
          if (c.choices[0].delta.content && ++pieces === 2) {
            if (how === 'signal') controller.abort();
            else await engine.interrupt();
          }
        }
        expect(last.choices[0].finish_reason).toBe('abort');
        expect(last.usage!.completion_tokens).toBeLessThanOrEqual(3);
        expect(last.usage!.cached_prompt_tokens).toBe(first.usage.prompt_tokens - 1);
        if (how === 'interrupt()') {
          // The partial turn is in the state; this prompt does not extend it, so the snapshot serves it.
          const again = await engine.chat.completions.create({ messages: [user(PROMPT)], max_tokens: 48 });
          expect(again.choices[0].message.content).toBe(REPLY);
          expect(again.usage.cached_prompt_tokens).toBe(first.usage.prompt_tokens - 1);
        }
      }));
  }

  it('a second turn prefills only its new tokens', () =>
    withGpuErrors(async () => {
      const messages = [user(PROMPT), { role: 'assistant', content: REPLY }, user('What did the jury say?')];
      const second = await engine.chat.completions.create({ messages, max_tokens: 6 });
      log('turn 2', second);
      // The last request (in the abort test) was turn 1 again, so its prompt and reply are in the state, the reply's
      // last token (<|im_end|>) too: decode runs a step ahead, and that step fed it.
      expect(second.usage.cached_prompt_tokens).toBe(first.usage.prompt_tokens + first.usage.completion_tokens);
      // The new tokens: "\n<|im_start|>user\nWhat did the jury say?<|im_end|>\n<|im_start|>assistant\n".
      expect(second.usage.prompt_tokens - second.usage.cached_prompt_tokens).toBeLessThanOrEqual(25);
      expect(second.choices[0].message.content.length).toBeGreaterThan(0);
    }));

  it('resetChat forgets the conversation and its snapshot: the next request prefills from scratch', () =>
    withGpuErrors(async () => {
      await engine.resetChat();
      const r = await engine.chat.completions.create({ messages: [user(PROMPT)], max_tokens: 1 });
      expect(r.usage.cached_prompt_tokens).toBe(0);
      expect(r.choices[0].message.content.length).toBeGreaterThan(0);
      expect(REPLY.startsWith(r.choices[0].message.content)).toBe(true);
    }));

  it('a saved session restores into an emptied engine and continues with the same greedy reply, prefilling only the new turn', () =>
    withGpuErrors(async () => {
      await engine.resetChat();
      const turn1 = await engine.chat.completions.create({ messages: [user(PROMPT)], max_tokens: 6 });
      const session = await engine.saveSession();
      const history: ChatMessage[] = [user(PROMPT), { ...turn1.choices[0].message }, user('What did the jury say next?')];
      const straight = await engine.chat.completions.create({ messages: history, max_tokens: 5 });

      await engine.resetChat(); // the reload: nothing of the conversation is left on the GPU
      const restored = await engine.restoreSession(session);
      expect(restored.messages).toEqual([user(PROMPT), turn1.choices[0].message]);
      expect(restored.tokens).toBe(straight.usage.cached_prompt_tokens);
      const again = await engine.chat.completions.create({ messages: history, max_tokens: 5 });
      log('restored session', again);
      expect(again.choices[0].message.content).toBe(straight.choices[0].message.content);
      expect(again.usage.completion_tokens).toBe(straight.usage.completion_tokens);
      expect(again.usage.cached_prompt_tokens).toBe(restored.tokens);
    }));

  it('a session it cannot continue is a SessionError and leaves the conversation as it was', () =>
    withGpuErrors(async () => {
      await engine.resetChat();
      const turn1 = await engine.chat.completions.create({ messages: [user(PROMPT)], max_tokens: 4 });
      const good = await engine.saveSession();
      const { header, arrays } = await decodeSession(good);
      const bad: [string, Blob, RegExp][] = [
        ['another model', encodeSession({ ...header, model: 'f'.repeat(64) }, arrays), /another model/],
        ['more context', encodeSession({ ...header, ids: Array(300).fill(1) }, arrays), /context is 256.*larger maxContext/],
        ['no session', new Blob([new Uint8Array(64)]), /not a saved session/],
        ['truncated', good.slice(0, good.size - 4), /not a saved session/],
        ['damaged state', encodeSession(header, arrays.slice(1)), /damaged/],
      ];
      for (const [what, blob, message] of bad) {
        const err = await engine.restoreSession(blob).catch((e) => e);
        expect(err, what).toBeInstanceOf(SessionError);
        expect(err.message, what).toMatch(message);
      }
      // the conversation still holds turn 1: the next turn reuses it
      const next = await engine.chat.completions.create({ messages: [user(PROMPT), { ...turn1.choices[0].message }, user('And?')], max_tokens: 2 });
      expect(next.usage.cached_prompt_tokens).toBe(header.ids.length);
    }));

  it('a prompt plus max_tokens beyond maxContext throws ContextLengthError', async () => {
    const err = await engine.chat.completions.create({ messages: [user(PROMPT)], max_tokens: 250 }).catch((e) => e);
    expect(err).toBeInstanceOf(ContextLengthError);
    expect(err.name).toBe('ContextLengthError');
    expect(err.limit).toBe(256);
    expect(err.promptTokens).toBe(first.usage.prompt_tokens + 250);
    expect(err.message).toMatch(/Lower max_tokens.*larger maxContext/);
  });
});

describe('Engine with streamed experts (Node, packed brown-tiny int4)', () => {
  it('a GPU expert budget below the model streams experts from the open store and reports usage.expert_cache; speculative decoding streams too', () =>
    withGpuErrors(async () => {
      const store = await NodeFileStore.open(MODEL);
      const engine = await createEngine({ model: store, device: await getTestDevice(), maxContext: 128, expertCacheBytes: 2 << 20, speculative: { draftTokens: 2, minAcceptance: 0 } });
      try {
        const spec = await engine.chat.completions.create({ messages: [user(PROMPT)], max_tokens: 48 });
        expect(spec.choices[0].message.content).toBe(REPLY);
        expect(spec.usage.speculative!.drafted).toBeGreaterThan(0);
        const r = await engine.chat.completions.create({ messages: [user(PROMPT)], max_tokens: 48, speculative: false });
        console.log(`[engine] streamed experts: ${JSON.stringify((r.usage.expert_cache as { totals: object }).totals)}`);
        expect(r.choices[0].message.content).toBe(REPLY);
        expect(r.usage.expert_cache).toMatchObject({ experts: 64 });
        expect((r.usage.expert_cache as { slotsPerLayer: number }).slotsPerLayer).toBeLessThan(64);
      } finally {
        await engine.unload();
        await store.close();
      }
    }));
});

describe('Engine with speculative decoding (Node, packed brown-tiny int4 and its MTP layer)', () => {
  it('a sampled reply equals plain decoding\'s (`speculative: false`); usage.speculative counts the drafts; a penalty decodes plainly', () =>
    withGpuErrors(async () => {
      const store = await NodeFileStore.open(MODEL), device = await getTestDevice();
      const engine = await createEngine({ model: store, device, maxContext: 256, speculative: { draftTokens: 2, minAcceptance: 0 } });
      try {
        const turn2 = [user(PROMPT), { role: 'assistant' as const, content: REPLY }, user('What did the jury say?')];
        // greedy with streamed experts is the test above; here a sampled reply to a two-turn conversation
        const requests = [{ messages: turn2, max_tokens: 10, temperature: 0.8, top_k: 40, seed: 3 }];
        for (const req of requests) {
          const p = await engine.chat.completions.create({ ...req, speculative: false });
          expect(p.usage.speculative).toMatchObject({ rounds: 0, plain_tokens: p.usage.completion_tokens });
          const s = await engine.chat.completions.create(req);
          console.log(`[engine] speculative: ${JSON.stringify(s.usage.speculative)}, "${s.choices[0].message.content}"`);
          expect(s.choices[0].message).toEqual(p.choices[0].message);
          const u = s.usage.speculative!;
          expect(u.drafted).toBeGreaterThan(0);
          expect(u.drafted).toBeLessThanOrEqual(2 * u.rounds);
          // every round yields 1 + its accepted drafts; the reply may stop inside the last one
          expect(u.rounds + u.accepted).toBeGreaterThanOrEqual(s.usage.completion_tokens);
          expect(u.rounds + u.accepted - 2).toBeLessThanOrEqual(s.usage.completion_tokens);
          expect(u.acceptance_rate).toBeCloseTo(u.accepted / u.drafted);
        }
        const penalised = await engine.chat.completions.create({ messages: [user(PROMPT)], max_tokens: 4, repetition_penalty: 1.3 });
        expect(penalised.usage.speculative).toMatchObject({ rounds: 0, plain_tokens: penalised.usage.completion_tokens });
        const noMtp = Object.create(store, { manifest: { value: async () => ({ ...(await store.manifest()), mtp: false }) } });
        await expect(createEngine({ model: noMtp, device, speculative: { draftTokens: 1 } })).rejects.toThrow(/multi-token-prediction layer/);
      } finally {
        await engine.unload();
        await store.close();
      }
    }));
});
