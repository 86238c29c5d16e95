// The engine's CPU-side parts: reply text (stop strings, held-back tails, <think> split into deltas), typed errors
// rebuilt after crossing the worker boundary, and HttpStore reading a packed model over HTTP with and without
// Range support (checked against NodeFileStore on the same folder).
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerErrorTransfer, rebuildError } from '../../src/engine/error-transfer.ts';
import { HttpStore } from '../../src/engine/http-store.ts';
import { readTokenizer } from '../../src/engine/load.ts';
import { ReplyText } from '../../src/engine/reply.ts';
import { createEngine } from '../../src/engine/engine.ts';
import { ConfigError, ContextLengthError, ModelLoadError, Qwen3NextError, WebGPUNotAvailableError } from '../../src/errors.ts';
import type { ModelStore } from '../../src/store/store.ts';
import { NodeFileStore } from '../../src/store/node.ts';
import { transferHandlers } from 'comlink';

const MODEL = 'public/models/brown-tiny-q4';

describe('ReplyText', () => {
  const feed = (r: ReplyText, pieces: string[]) => pieces.map((p) => (r.push(p), r.delta(false).content ?? '')).join('');

  it('cuts at the earliest stop string and never streams a stop string\'s start', () => {
    const r = new ReplyText(['END', 'zz']);
    const streamed = feed(r, ['Hello E', 'N', 'D tail']);
    expect(r.stopped).toBe(true);
    expect(streamed + (r.delta(true).content ?? '')).toBe('Hello ');
    expect(r.message()).toEqual({ role: 'assistant', content: 'Hello ' });
  });

  it('releases a held-back tail that did not become a stop string', () => {
    const r = new ReplyText(['END']);
    expect(feed(r, ['abc E', 'N'])).toBe('abc ');
    expect(r.delta(true).content).toBe('EN');
    expect(r.stopped).toBe(false);
  });

  it('splits <think> into reasoning_content, in deltas and in the message', () => {
    const r = new ReplyText([]);
    const deltas = ['<think>\nwhy', ' not', '\n</think>\n\nBe', 'cause.'].map((p) => (r.push(p), r.delta(false)));
    const reasoning = deltas.map((d) => d.reasoning_content ?? '').join(''), content = deltas.map((d) => d.content ?? '').join('');
    expect(reasoning).toBe('why not');
    expect(content).toBe('Because.');
    expect(r.message()).toEqual({ role: 'assistant', content: 'Because.', reasoning_content: 'why not' });
  });
});

describe('createEngine without WebGPU', () => {
  it('throws WebGPUNotAvailableError with the remedy before fetching anything', async () => {
    expect((globalThis as { navigator?: Navigator }).navigator?.gpu).toBeUndefined(); // plain Node 20: no navigator.gpu
    const e = await createEngine({ model: 'http://127.0.0.1:9/never-fetched/' }).catch((e) => e);
    expect(e).toBeInstanceOf(WebGPUNotAvailableError);
    expect(e.message).toMatch(/navigator\.gpu is missing.*secure context.*requestNodeDevice/);
  });
});

describe('createEngine with a model shape the GPU kernels do not support', () => {
  it('throws ConfigError from the manifest alone: no tokenizer file, no weight is read', async () => {
    const inner = await NodeFileStore.open(MODEL);
    const reads: string[] = [];
    const store: ModelStore = {
      manifest: async () => {
        const m = await inner.manifest();
        return { ...m, config: { ...m.config, head_dim: 40 } };
      },
      readDense: (name) => (reads.push(name), inner.readDense(name)),
      readExpert: (l, e) => (reads.push(`L${l}.E${e}`), inner.readExpert(l, e)),
      readFile: (name) => (reads.push(name), inner.readFile(name)),
      close: () => inner.close(),
    };
    const e = await createEngine({ model: store, device: {} as GPUDevice }).catch((e) => e); // never touched
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(/^config\.json: this runtime's GPU kernels cannot run this model \(attention: head_dim 40 must be a multiple of 16, at most 256\)/);
    expect(reads).toEqual([]);
    await inner.close();
  });
});

describe('errors across the worker boundary', () => {
  it('rebuilds our classes by name with their fields', () => {
    const sent = new ContextLengthError('too long', 300, 256);
    const wire = structuredClone({ name: sent.name, message: sent.message, stack: sent.stack, promptTokens: 300, limit: 256 });
    const e = rebuildError(wire) as ContextLengthError;
    expect(e).toBeInstanceOf(ContextLengthError);
    expect(e).toBeInstanceOf(Qwen3NextError);
    expect([e.name, e.message, e.limit, e.promptTokens, e.stack]).toEqual(['ContextLengthError', 'too long', 256, 300, sent.stack]);
    expect(rebuildError({ name: 'TypeError', message: 'm' })).toBeInstanceOf(TypeError);
    expect(rebuildError({ name: 'SomethingElse', message: 'm' }).constructor).toBe(Error);
  });

  it('the registered comlink handler serializes what the worker throws and throws the rebuilt error', () => {
    registerErrorTransfer();
    const h = transferHandlers.get('throw')!;
    const [wire] = h.serialize({ value: new ModelLoadError('bad file', 'dense-000.bin') });
    let thrown: unknown;
    try {
      h.deserialize(structuredClone(wire));
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(ModelLoadError);
    expect(thrown).toMatchObject({ name: 'ModelLoadError', message: 'bad file', file: 'dense-000.bin' });
  });
});

describe('HttpStore', () => {
  let server: Server;
  let base = '';
  const requests: { url: string; range?: string; status: number }[] = [];
  let ranges = true;

  beforeAll(async () => {
    server = createServer((req, res) => {
      const file = join(MODEL, req.url!.replace(/^\/m\//, ''));
      let size: number;
      try {
        size = statSync(file).size;
      } catch {
        requests.push({ url: req.url!, status: 404 });
        return void res.writeHead(404).end();
      }
      const m = ranges && req.headers.range?.match(/^bytes=(\d+)-(\d+)$/);
      requests.push({ url: req.url!, range: req.headers.range, status: m ? 206 : 200 });
      if (!m) return void createReadStream(file).pipe(res.writeHead(200, { 'Content-Length': size }));
      const [start, end] = [Number(m[1]), Number(m[2])];
      res.writeHead(206, { 'Content-Length': end - start + 1, 'Content-Range': `bytes ${start}-${end}/${size}` });
      createReadStream(file, { start, end }).pipe(res);
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/m`;
  });
  afterAll(() => server?.close());

  for (const withRanges of [true, false]) {
    it(`reads the same records as NodeFileStore (${withRanges ? 'Range requests' : 'server without Range: each file once'})`, async () => {
      ranges = withRanges;
      requests.length = 0;
      const http = await HttpStore.open(base), local = await NodeFileStore.open(MODEL);
      const m = await http.manifest();
      expect(m).toEqual(await local.manifest());
      for (const d of [m.dense[0], m.dense[m.dense.length - 1]]) expect(await http.readDense(d.name, true)).toEqual(await local.readDense(d.name));
      for (const [l, e] of [[0, 0], [0, 63], [7, 5]]) expect(await http.readExpert(l, e, true)).toEqual(await local.readExpert(l, e));
      expect(new TextDecoder().decode(await http.readFile('tokenizer_config.json'))).toBe(readFileSync(join(MODEL, 'tokenizer_config.json'), 'utf8'));
      const tokenizer = await readTokenizer(http);
      expect(tokenizer.eosTokenIds).toContain(tokenizer.tokenToId('<|im_end|>'));
      const expertFetches = requests.filter((r) => r.url === '/m/experts-L000.bin');
      expect(expertFetches.map((r) => r.status)).toEqual(withRanges ? [206, 206] : [200]);
      await Promise.all([http.close(), local.close()]);
    });
  }

  it('a missing model folder is a ModelLoadError that says what to do', async () => {
    const e = await HttpStore.open(`${base}/nothing-here/`).catch((e) => e);
    expect(e).toBeInstanceOf(ModelLoadError);
    expect(e.message).toMatch(/HTTP 404.*packed model folder/);
  });
});
