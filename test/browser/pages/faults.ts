// Browser side of test/browser/faults-*.test.ts: the IndexedDB store and the engine under faults. Downloads run
// with `fetch` wrapped, so the page itself counts every record request (by file and range) and can fail them all
// after the first N, as a dropped connection does; the engine runs in this thread (createEngine) or in a worker.
// GPUAdapter.requestDevice and GPUDevice.createBindGroup are wrapped so the test can destroy the engine's own
// device at a chosen bind group of a request: no hook in the runtime.
import { createStore, get, keys, set } from 'idb-keyval';
import { createEngine, createWorkerEngine, type Engine } from '../../../src/index.ts';
import { downloadModel, IdbModelStore } from '../../../src/store/browser.ts';
import type { QuotaExceededError } from '../../../src/errors.ts';

const MODEL = '/models/brown-tiny-q4/';

const devices: GPUDevice[] = [];
const requestDevice = GPUAdapter.prototype.requestDevice;
GPUAdapter.prototype.requestDevice = async function (this: GPUAdapter, desc?: GPUDeviceDescriptor) {
  const device = await requestDevice.call(this, desc);
  devices.push(device);
  return device;
};
const bindGroups = { made: 0, destroyAt: Infinity };
const createBindGroup = GPUDevice.prototype.createBindGroup;
GPUDevice.prototype.createBindGroup = function (this: GPUDevice, desc: GPUBindGroupDescriptor) {
  if (++bindGroups.made === bindGroups.destroyAt) this.destroy();
  return createBindGroup.call(this, desc);
};

/**
 * Model requests seen by the wrapped fetch (`file range`, or just `manifest.json`), and how many record requests
 * to let through: the next one's body breaks off after 100 bytes, later ones fail at once (a dropped connection).
 */
const net = { requests: [] as string[], failAfter: Infinity, records: 0 };
const realFetch = globalThis.fetch.bind(globalThis);
globalThis.fetch = async (input: RequestInfo | URL, init?: RequestInit) => {
  const url = new URL(String(input), location.href), range = new Headers(init?.headers).get('Range');
  if (!url.pathname.startsWith(MODEL)) return realFetch(input, init);
  net.requests.push(`${url.pathname.slice(MODEL.length)}${range ? ` ${range}` : ''}`);
  if (!range || ++net.records <= net.failAfter) return realFetch(input, init);
  if (net.records > net.failAfter + 1) throw new TypeError('Failed to fetch (the test dropped the connection)');
  const res = await realFetch(input, init), head = new Uint8Array(await res.arrayBuffer()).slice(0, 100);
  const body = new ReadableStream({ start: (c) => (c.enqueue(head), c.error(new TypeError('network error (the test cut the body)'))) });
  return new Response(body, { status: res.status, headers: res.headers });
};

const dbFor = (name: string) => createStore(`q3n:${name}`, 'records');
const engineDb = () => new URL(MODEL, location.href).href; // the engine's database (cache: true) is named by the absolute URL
const failure = (e: unknown) => ({ name: (e as Error).name, message: (e as Error).message });

let engine: Engine | undefined;
let worker: Worker | undefined;
let chunksSeen = 0;
const warnings: string[] = [];

const faultsTest = {
  /** Download (or resume) into database `name`; record requests after the first `failAfter` fail. */
  async download(name = engineDb(), failAfter = Infinity, concurrency = 4) {
    Object.assign(net, { requests: [], failAfter, records: 0 });
    try {
      await downloadModel(MODEL, { name, concurrency });
      return { ok: true, requests: net.requests };
    } catch (e) {
      return { ok: false, error: failure(e), requests: net.requests };
    } finally {
      net.failAfter = Infinity;
    }
  },

  /** Names of the records stored and verified ('ok:' keys), and how many keys the database holds in all. */
  async stored(name = engineDb()) {
    const all = (await keys(dbFor(name))).map(String);
    return { ok: all.filter((k) => k.startsWith('ok:')).map((k) => k.slice(3)), keys: all.length };
  },

  /** The records whose stored bytes fail their SHA-256 check ([] for a sound store). */
  async verify(name = engineDb()) {
    return (await IdbModelStore.open(name)).verifyAll();
  },

  /** A download whose QuotaExceededError (or other failure) comes back as fields. */
  async quota(name: string) {
    net.requests = [];
    try {
      await downloadModel(MODEL, { name });
      return null;
    } catch (e) {
      const q = e as QuotaExceededError;
      return { ...failure(e), needed: q.neededBytes, available: q.availableBytes, requests: net.requests };
    }
  },

  async deleteDb(name: string) {
    await new Promise((ok, fail) => Object.assign(indexedDB.deleteDatabase(`q3n:${name}`), { onsuccess: ok, onerror: fail, onblocked: ok }));
  },

  /** Flip every bit of 16 bytes in the middle of a stored record (its 'ok:' key stays: the index still trusts it). */
  async corrupt(record: string, name = engineDb()) {
    const blob = (await get<Blob>(`rec:${record}`, dbFor(name)))!;
    const bytes = new Uint8Array(await blob.arrayBuffer());
    for (let i = 0; i < 16; i++) bytes[(bytes.length >> 1) + i] ^= 0xff;
    await set(`rec:${record}`, new Blob([bytes]), dbFor(name));
  },

  /** Load the engine with `cache: true` (the IndexedDB database is named by the model's absolute URL). */
  async load(inWorker = false, expertCacheBytes?: number) {
    warnings.length = 0;
    const opts = { model: MODEL, cache: true, maxContext: 256, expertCacheBytes, onWarning: (w: string) => void warnings.push(w) };
    if (inWorker) {
      worker = new Worker(new URL('../../../src/worker.ts', import.meta.url), { type: 'module' });
      engine = await createWorkerEngine(worker, opts);
    } else {
      engine = await createEngine(opts);
    }
    return { warnings: [...warnings] };
  },

  /**
   * The greedy reply, or the error the request ended with. The engine's device is destroyed at the request's
   * `destroy.atBindGroup`-th bind group (while it builds its first forward's op list), or after
   * `destroy.afterPieces` content pieces.
   */
  async reply(content: string, maxTokens: number, destroy: { atBindGroup?: number; afterPieces?: number } = {}) {
    Object.assign(bindGroups, { made: 0, destroyAt: destroy.atBindGroup ?? Infinity });
    let text = '', pieces = 0;
    try {
      const chunks = await engine!.chat.completions.create({ messages: [{ role: 'user', content }], max_tokens: maxTokens, stream: true });
      for await (const c of chunks) {
        text += c.choices[0].delta.content ?? '';
        if (c.choices[0].delta.content && ++pieces === destroy.afterPieces) devices.at(-1)!.destroy();
      }
      return { text, pieces, devices: devices.length };
    } catch (e) {
      return { text, pieces, devices: devices.length, error: failure(e) };
    } finally {
      bindGroups.destroyAt = Infinity;
    }
  },

  /** Start a streamed reply and leave it running; `replying()` counts its chunks so far. */
  startReply(content: string) {
    chunksSeen = 0;
    void (async () => {
      const chunks = await engine!.chat.completions.create({ messages: [{ role: 'user', content }], max_tokens: 64, stream: true });
      for await (const _ of chunks) chunksSeen++;
    })();
  },

  replying: () => chunksSeen,

  terminateWorker() {
    worker!.terminate();
    engine = worker = undefined;
  },

  /** Record requests the wrapped fetch has seen in this download. */
  recordRequests: () => net.records,

  async unload() {
    await engine?.unload();
    engine = undefined;
  },
};

export type FaultsTest = typeof faultsTest;
declare global {
  interface Window {
    faultsTest: FaultsTest;
  }
}
window.faultsTest = faultsTest;
