// Chatting before the download completes (issue #17) at the real 80B-A3B record sizes: a synthetic packed model
// (the 80B config with LAYERS layers: int4 experts of 1.9 MB, the int8 embedding and lm_head, every dense tensor at
// its real size; random bytes, identical for records of one size) served from this process through a simulated
// line of R MB/s (every byte queued through one pipe), into Chromium's IndexedDB through the real store
// (src/store/browser.ts), a fresh profile per rate. bench/pages/partial-80b.ts drives it as a conversation would,
// without the GPU (SwiftShader cannot run this shape): ready, a 30-token prompt's routed experts (the calibrated
// trace), 16 decode tokens through an LRU of SLOTS experts a layer, while the fill stores the rest. The figures
// are the line's and the store's; the H100's compute (1.5K prefill tok/s, 7 ms a decode token) adds little to them.
// Times scale with the layers: the 48-layer figures are extrapolated from the measured ones (per layer) and the
// real model's bytes.
//   RATES=50,10 npx vitest run --config vitest.measure.config.ts bench/partial-80b.measure.ts
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createHash, randomFillSync } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { it } from 'vitest';
import { parseConfig } from '../src/config.ts';
import { densePlan, expertLayout, QUANT_INT4 } from '../src/format/pack.ts';
import { packedWords } from '../src/quant/formats.ts';
import { DENSE_ALIGN, DENSE_SHARD_BYTES, denseShardName, expertFileName, FORMAT, MANIFEST, VERSION, type Manifest, type RecordEntry } from '../src/store/manifest.ts';
import { syntheticConfig } from '../scripts/make-fullsize-layer.ts';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, startBrowser } from '../test/helpers/browser.ts';

const LAYERS = Number(process.env.LAYERS ?? 6), PROMPT = 30, DECODE = 16, SLOTS = 44; // 44 slots: ~8 GiB of experts at 48 layers
const RATES = (process.env.RATES ?? '50,10').split(',').map(Number); // MB/s
const BASE = '/synthetic-80b/';
const TOKENIZER = join(import.meta.dirname, '../public/models/brown-tiny-q4');

/** The manifest of the packed 80B shape at `layers` layers, laid out as q3n convert lays it out; sizes only. */
function layout(layers: number) {
  const rawConfig = syntheticConfig(layers), c = parseConfig(rawConfig), plan = densePlan(c, QUANT_INT4);
  const recordBytes = expertLayout(c, 'q4').words * 4;
  const dense: { name: string; file: string; offset: number; bytes: number }[] = [], data: { name: string; bytes: number }[] = [];
  let shard = -1, offset = 0;
  for (const t of plan) {
    const bytes = packedWords(t.format, t.N, t.K) * 4;
    let at = Math.ceil(offset / DENSE_ALIGN) * DENSE_ALIGN;
    if (shard < 0 || at + bytes > DENSE_SHARD_BYTES) {
      if (shard >= 0) data.push({ name: denseShardName(shard), bytes: offset });
      shard++;
      at = 0;
    }
    dense.push({ name: t.name, file: denseShardName(shard), offset: at, bytes });
    offset = at + bytes;
  }
  data.push({ name: denseShardName(shard), bytes: offset });
  for (let l = 0; l < layers; l++) data.push({ name: expertFileName(l), bytes: c.numExperts * recordBytes });
  return { rawConfig, c, plan, recordBytes, dense, data, denseBytes: dense.reduce((n, d) => n + d.bytes, 0), expertBytes: layers * c.numExperts * recordBytes };
}

it('time to ready and to the first token at the 80B record sizes, whole download against the dense part first', async () => {
  const L = layout(LAYERS), full = layout(48);
  // One random buffer; a record of n bytes is its first n bytes (records of one size share content and hash).
  const content = randomFillSync(Buffer.alloc(Math.max(L.recordBytes, ...L.dense.map((d) => d.bytes))));
  const hashes = new Map<number, string>();
  const sha = (n: number) => hashes.get(n) ?? hashes.set(n, createHash('sha256').update(content.subarray(0, n)).digest('hex')).get(n)!;
  const files = ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json'].map((name) => ({ name, body: readFileSync(join(TOKENIZER, name)) }));
  const manifest: Manifest = {
    format: FORMAT, version: VERSION, config: L.rawConfig, quant: QUANT_INT4,
    files: files.map((f) => ({ name: f.name, bytes: f.body.length, sha256: createHash('sha256').update(f.body).digest('hex') })),
    data: L.data,
    dense: L.plan.map((t, i) => ({ ...t, file: L.dense[i].file, offset: L.dense[i].offset, bytes: L.dense[i].bytes, sha256: sha(L.dense[i].bytes) })),
    experts: Array.from({ length: LAYERS }, (_, l): RecordEntry[] => Array.from({ length: L.c.numExperts }, (_, e) => ({ file: expertFileName(l), offset: e * L.recordBytes, bytes: L.recordBytes, sha256: sha(L.recordBytes) }))),
  };
  const manifestText = JSON.stringify(manifest);
  const byRange = new Map<string, number>(); // `${file}@${offset}` -> bytes
  for (const d of L.dense) byRange.set(`${d.file}@${d.offset}`, d.bytes);
  for (let l = 0; l < LAYERS; l++) for (let e = 0; e < L.c.numExperts; e++) byRange.set(`${expertFileName(l)}@${e * L.recordBytes}`, L.recordBytes);

  // A plain HTTP server (Playwright's route cannot carry the 330 MB embedding): Range requests, CORS for the page's
  // origin, every response held until the simulated line has carried it.
  let rate = 0, free = 0, bytes = 0;
  const server = createServer((req, res) => {
    res.setHeader('access-control-allow-origin', '*');
    res.setHeader('access-control-allow-headers', 'range');
    res.setHeader('access-control-expose-headers', 'content-range, content-length');
    if (req.method === 'OPTIONS') return void res.writeHead(204).end();
    const name = new URL(req.url!, 'http://x').pathname.slice(BASE.length), range = req.headers['range'];
    let body: Buffer;
    if (name === MANIFEST) body = Buffer.from(manifestText);
    else if (files.some((f) => f.name === name)) body = files.find((f) => f.name === name)!.body;
    else {
      const [, a] = /^bytes=(\d+)-(\d+)$/.exec(range ?? '') ?? [];
      const n = byRange.get(`${name}@${a}`);
      if (n === undefined) return void res.writeHead(404).end();
      body = content.subarray(0, n);
    }
    bytes += body.length;
    const now = performance.now();
    free = Math.max(free, now) + body.length / (rate * 1e3); // rate MB/s = rate * 1e3 bytes a ms
    setTimeout(() => {
      if (range) res.setHeader('content-range', `bytes ${/^bytes=(\d+)/.exec(range)![1]}-${Number(/^bytes=(\d+)/.exec(range)![1]) + body.length - 1}/*`);
      res.writeHead(range ? 206 : 200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body);
    }, free - now);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${BASE}`;

  const session = await startBrowser();
  const rows: string[] = [];
  const mb = (n: number) => (n / 1e6).toFixed(0);
  try {
    for (const r of RATES) {
      [rate, free, bytes] = [r, 0, 0];
      // A profile on disk: a context of browser.newContext() keeps IndexedDB's blobs in memory, where a few GB fail
      const dir = mkdtempSync(join(tmpdir(), 'q3n-80b-'));
      const context = await chromium.launchPersistentContext(dir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, baseURL: session.baseURL });
      const page = await context.newPage(), tp = { page };
      await page.goto('/bench/pages/partial-80b.html');
      await page.waitForFunction(() => 'partial80b' in window);
      const shape = { layers: LAYERS, experts: L.c.numExperts, k: L.c.numExpertsPerTok, slots: SLOTS };
      const { readyMs } = await tp.page.evaluate(([u, s]) => window.partial80b.load(u, s), [url, shape] as const);
      const atReady = bytes;
      const first = await tp.page.evaluate((n) => window.partial80b.prompt(n), PROMPT);
      const atFirst = bytes;
      const dec = await tp.page.evaluate(([a, b]) => window.partial80b.decode(a, b), [PROMPT, PROMPT + DECODE] as const);
      await tp.page.evaluate(() => window.partial80b.close());
      await context.close();
      rmSync(dir, { recursive: true, force: true });
      const med = [...dec.ms].sort((a, b) => a - b)[dec.ms.length >> 1];
      // 48 layers: the measured dense time scaled to the real dense bytes, the prompt's experts and a decode token's
      // time per layer times 48
      const perLayerFirst = (first.firstTokenMs - readyMs) / LAYERS, expertsPerLayer = first.experts / LAYERS;
      const ready48 = (readyMs / 1000) * (full.denseBytes / L.denseBytes), first48 = ready48 + (48 * perLayerFirst) / 1000;
      rows.push(`| ${rate} MB/s | ${mb(atReady)} MB: ${(readyMs / 1000).toFixed(1)} s | ${first.experts} (${expertsPerLayer.toFixed(0)} a layer), ${mb(atFirst - atReady)} MB: ${((first.firstTokenMs - readyMs) / 1000).toFixed(1)} s | ` +
        `${(1000 / med).toFixed(2)} (${(dec.misses / DECODE / LAYERS).toFixed(1)} misses a token a layer) | ${((L.denseBytes + L.expertBytes) / (rate * 1e6)).toFixed(0)} s | ` +
        `${mb(full.denseBytes)} MB: ${ready48.toFixed(0)} s | ${first48.toFixed(0)} s | ${(1000 / (med * 48 / LAYERS)).toFixed(3)} | ${((full.denseBytes + full.expertBytes) / (rate * 1e6) / 60).toFixed(0)} min |`);
      console.log(rows.at(-1));
    }
  } finally {
    await session.close();
    server.close();
  }
  console.log([`80B-A3B record sizes (experts ${(L.recordBytes / 1e6).toFixed(2)} MB), ${LAYERS} layers measured (dense ${mb(L.denseBytes)} MB, experts ${mb(L.expertBytes)} MB), ${PROMPT}-token prompt, ${DECODE} decode tokens, ${SLOTS} expert slots a layer:`,
    `| line | ${LAYERS} layers: dense part stored (ready) | prompt's experts stored (first token, network part) | decode tok/s while the fill runs (network and store) | ${LAYERS} layers: whole download | 48 layers: ready | 48 layers: first token | 48 layers: decode tok/s | 48 layers: whole download |`,
    '|---|---|---|---|---|---|---|---|---|', ...rows].join('\n'));
});
