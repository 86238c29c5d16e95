// The engine hub (src/engine/engine-hub.ts), which a SharedWorker's tabs share, on Dawn/SwiftShader over the packed
// int4 brown-tiny: two clients on one loaded model, their turns interleaved, each get the reply their conversation
// gets alone (the GPU state is switched between them, so a second turn still prefills only its new tokens); requests
// are taken from the clients in turn; a client that leaves mid-reply stops it and the other goes on; the last one to
// leave unloads the model and a new client loads it again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineHub, type HubClient } from '../../src/engine/engine-hub.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatMessage, EngineOptions } from '../../src/engine/types.ts';
import { NodeFileStore } from '../../src/store/node.ts';
import type { ModelStore } from '../../src/store/store.ts';
import { getTestDevice, withGpuErrors } from '../helpers/gpu.ts';

const MODEL = 'public/models/brown-tiny-q4';
const A = 'The jury said it did find that many of the voters were not qualified.';
const B = 'It was a cold morning in the city.';
const user = (content: string): ChatMessage => ({ role: 'user', content });

describe('EngineHub: one model, a conversation per client (Node, packed brown-tiny int4)', () => {
  let store: ModelStore;
  let opts: EngineOptions;
  const hub = new EngineHub();
  let a: HubClient, b: HubClient;
  const ask = (c: HubClient, messages: ChatMessage[], max = 4) =>
    hub.run(c, (e) => e.create({ messages, max_tokens: max }) as Promise<ChatCompletion>);
  const turn2 = (first: string, reply: ChatCompletion): ChatMessage[] => [user(first), { ...reply.choices[0].message }, user('And then what?')];

  beforeAll(async () => {
    store = await NodeFileStore.open(MODEL);
    opts = { model: store, device: await getTestDevice(), maxContext: 256 };
    a = await hub.join(opts, {});
    b = await hub.join(opts, {});
  });
  afterAll(async () => {
    for (const c of [a, b]) await hub.leave(c);
    await store.close();
  });

  it('loads the model once for both clients', () => {
    expect(hub.info()).toEqual({ clients: 2, loads: 1 });
  });

  it('interleaved turns of two clients give each the reply of its conversation alone, second turns prefilling only new tokens', () =>
    withGpuErrors(async () => {
      // alone: A's two turns, then B's first, with nothing in between
      const a1 = await ask(a, [user(A)]);
      const a2 = await ask(a, turn2(A, a1));
      const b1 = await ask(b, [user(B)]);
      expect(a2.usage.cached_prompt_tokens).toBeGreaterThan(0);
      // interleaved, from fresh conversations: A's second turn runs after B's first, from A's state switched back in
      await hub.reset(a);
      await hub.reset(b);
      const [x1, y1] = await Promise.all([ask(a, [user(A)]), ask(b, [user(B)])]);
      const x2 = await ask(a, turn2(A, x1));
      for (const [got, want] of [[x1, a1], [x2, a2], [y1, b1]]) expect(got.choices[0].message).toEqual(want.choices[0].message);
      expect(a1.choices[0].message.content).not.toBe(b1.choices[0].message.content);
      expect(x2.usage.cached_prompt_tokens).toBe(a2.usage.cached_prompt_tokens);
    }));

  it('takes requests from the clients in turn, not in the order they were queued', () =>
    withGpuErrors(async () => {
      const order: string[] = [];
      const tag = (c: HubClient, name: string) => hub.run(c, async (e) => { order.push(name); await e.create({ messages: [user(name)], max_tokens: 1 }); });
      await Promise.all([tag(a, 'a1'), tag(a, 'a2'), tag(a, 'a3'), tag(b, 'b1')]);
      expect(order).toEqual(['a1', 'b1', 'a2', 'a3']);
    }));

  it('a client that leaves mid-reply stops it; the other client\'s queued request runs, and a new client finds the model loaded', () =>
    withGpuErrors(async () => {
      const chunks: ChatCompletionChunk[] = [];
      const long = hub.run(a, async (e) => { for await (const c of e.stream({ messages: [user(A)], max_tokens: 200 })) { chunks.push(c); if (chunks.length === 3) void hub.leave(a); } });
      const other = ask(b, [user(B)]);
      await long;
      expect(chunks.at(-1)!.choices[0].finish_reason).toBe('abort');
      expect(chunks.length).toBeLessThan(8);
      await expect(hub.run(a, async () => 1)).rejects.toThrow(/unloaded/);
      const b1 = await other;
      expect(b1.choices[0].finish_reason).not.toBe('abort');
      expect(hub.info()).toEqual({ clients: 1, loads: 1 });
      a = await hub.join(opts, {});
      expect(hub.info()).toEqual({ clients: 2, loads: 1 });
    }));

  it('the last client to leave unloads the model; the next one loads it again', () =>
    withGpuErrors(async () => {
      await hub.leave(a);
      await hub.leave(b);
      expect(hub.info()).toEqual({ clients: 0, loads: 1 });
      a = await hub.join(opts, {});
      b = await hub.join(opts, {});
      expect(hub.info()).toEqual({ clients: 2, loads: 2 });
      expect((await ask(a, [user(A)], 2)).choices[0].finish_reason).toBe('length');
    }));
});
