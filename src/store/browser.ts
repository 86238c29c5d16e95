// Browser-only: a packed model in IndexedDB (through idb-keyval), one value per manifest record, downloaded
// record by record from a URL that serves the packed folder (src/store/manifest.ts) with HTTP Range requests.
//
// Database `q3n:<name>`, object store `records`:
//   'manifest'          manifest.json's text, stored before any record
//   'rec:<record>'      the record's bytes as a Blob (STORAGE-FACTS.md: Blobs read fastest); <record> is a dense
//                       tensor's name, `L<l>.E<e>` for an expert, or a tokenizer file's name. A record over
//                       PIECE_BYTES (the real model's int8 embed_tokens and lm_head, ~350 MB) is stored as pieces
//                       'rec:<record>#0', '#1', ...: values stay well under the browsers' ~128 MB single-value limit
//   'ok:<record>'       the record's SHA-256, written in the same transaction as its bytes after the download
//                       checked them: our own index of complete, verified records (navigator.storage.estimate()
//                       is no index: it under-reports IndexedDB after a restart)
// A download resumes from the 'ok:' keys: a complete record is never fetched again. Every record read back at load
// is checked against its SHA-256; a damaged one is deleted, fetched again from the model URL alone, and reported.
//
// Two tabs downloading the same model take turns: the download holds a Web Lock named `q3n-download:<name>`, so the
// second waits, then finds the first one's records stored and fetches only what is still missing (nothing, when
// the first finished). Each record is fetched and written once, and no write of one tab lands between another's
// check and write. Without Web Locks (old browsers) both download, which still ends complete and verified: a
// record's bytes and its 'ok:' key go in one transaction, and two tabs write the same verified bytes.
//
// Chatting before the download completes (`experts: 'background'`): the download stores the tokenizer files and
// the dense tensors (~5% of the 80B model) and opens the store `partial`. A routed expert not stored yet is fetched
// when the model first needs it (one Range request, hash-checked, stored), and IdbModelStore.fill() stores the rest
// in the background. Every expert fetch, on demand or by the fill, runs under a Web Lock of its own record
// (`q3n-record:<name>:<record>`) and first looks for the record's 'ok:' key, so two tabs never fetch one record
// twice; one tab fills at a time (`q3n-fill:<name>`). A fetch that fails for want of the network is an
// ExpertUnavailableError; what is stored stays, and the next fill resumes from it.
import { clear, delMany, get, getMany, keys, promisifyRequest, setMany, set, type UseStore } from 'idb-keyval';
import { ExpertUnavailableError, ModelLoadError, QuotaExceededError } from '../errors.ts';
import { expertRecordName, MANIFEST, parseManifest, sha256Hex, type Manifest, type RecordEntry } from './manifest.ts';
import { PackedStore } from './store.ts';

export interface DownloadProgress {
  bytesDone: number; // bytes of verified records stored, resumed ones included
  bytesTotal: number;
  recordsDone: number;
  recordsTotal: number;
  bytesPerSecond: number; // this session's download rate
  etaSeconds: number; // at that rate; Infinity before the first record arrives
}

export interface DownloadOptions {
  onProgress?: (p: DownloadProgress) => void;
  signal?: AbortSignal;
  /** Database name suffix (default: the URL). */
  name?: string;
  /** Parallel record fetches (default 4). */
  concurrency?: number;
  /** Told when a stored record read at load was damaged and fetched again (default: console.warn). */
  onWarning?: (message: string) => void;
  /** Called with the parsed manifest before anything is stored: throw to refuse the model (the engine checks its shapes). */
  accept?: (m: Manifest) => void;
  /**
   * 'first' (default): every record before the store opens. 'background': the tokenizer files and dense tensors,
   * then the store opens `partial` (routed experts fetched when first read; IdbModelStore.fill stores the rest).
   */
  experts?: 'first' | 'background';
}

/** The background fill's progress: the routed experts stored, and this session's rate. */
export interface FillProgress {
  bytesDone: number; // bytes of experts stored, earlier sessions' included
  bytesTotal: number;
  expertsDone: number;
  expertsTotal: number;
  bytesPerSecond: number;
  etaSeconds: number; // Infinity before the first record of this session arrives
}

export interface FillOptions {
  onProgress?: (p: FillProgress) => void;
  signal?: AbortSignal;
  /** Parallel record fetches (default 4). */
  concurrency?: number;
  /**
   * How much the model wants an expert now (the engine: the router's probability mass over the tokens so far): the
   * fill takes the missing expert with the highest next, ties in the even order over layers. Asked again before
   * every record, so it follows the conversation.
   */
  priority?: (layer: number, expert: number) => number;
}

export interface OpenOptions {
  /** The model folder's URL: a stored record that fails its SHA-256 check is fetched again from there. Without it, such a record is a ModelLoadError. */
  source?: string;
  /** Told about each record fetched again (default: console.warn). */
  onWarning?: (message: string) => void;
  /** Open with routed experts still missing (needs `source`): they are fetched when first read, and fill() stores the rest. */
  partial?: boolean;
}

/** A manifest record with the key it is stored under. */
interface Item extends RecordEntry {
  name: string;
}

/**
 * idb-keyval's store on a model's database, with a close(): idb-keyval's createStore keeps its connection open for
 * good, and an open connection holds up deleteStoredModel, in a SharedWorker engine (which outlives the tab that
 * deletes) as much as anywhere.
 */
interface ModelDb extends UseStore {
  close(): Promise<void>;
}

function dbFor(name: string): ModelDb {
  const req = indexedDB.open(`q3n:${name}`);
  req.onupgradeneeded = () => req.result.createObjectStore('records');
  const dbp = promisifyRequest(req);
  const use = (<T>(mode: IDBTransactionMode, callback: (store: IDBObjectStore) => T | PromiseLike<T>) =>
    dbp.then((db) => callback(db.transaction('records', mode).objectStore('records')))) as ModelDb;
  use.close = () => dbp.then((db) => db.close());
  return use;
}

/** `body` with a model's database, closed after. */
async function withDb<T>(name: string, body: (db: UseStore) => Promise<T>): Promise<T> {
  const db = dbFor(name);
  try {
    return await body(db);
  } finally {
    await db.close();
  }
}

/** The largest IndexedDB value a record is stored as (see the layout above). */
export const PIECE_BYTES = 64 << 20;

/** The keys a record's bytes are stored under: one, or one per piece of `piece` bytes. */
export function recordKeys(name: string, bytes: number, piece = PIECE_BYTES): string[] {
  return bytes <= piece ? [`rec:${name}`] : Array.from({ length: Math.ceil(bytes / piece) }, (_, i) => `rec:${name}#${i}`);
}

/** The IndexedDB entries of a verified record: its pieces as Blobs, then its 'ok:' index key. */
export function recordEntries(name: string, sha256: string, bytes: Uint8Array, piece = PIECE_BYTES): [string, Blob | string][] {
  const keys = recordKeys(name, bytes.length, piece);
  return [...keys.map((k, i): [string, Blob] => [k, new Blob([bytes.subarray(i * piece, (i + 1) * piece) as Uint8Array<ArrayBuffer>])]), [`ok:${name}`, sha256]];
}

/** A stored record's bytes as one Blob, or undefined when any piece is missing. */
async function storedBlob(db: UseStore, name: string, bytes: number): Promise<Blob | undefined> {
  const parts = await getMany<Blob | undefined>(recordKeys(name, bytes), db);
  if (parts.some((b) => !b)) return undefined;
  return parts.length === 1 ? parts[0] : new Blob(parts as Blob[]);
}

/** Every record of a manifest: tokenizer files, dense tensors, experts layer by layer. */
function items(m: Manifest): Item[] {
  return [...denseItems(m), ...expertItems(m)];
}

/** The records a model cannot start without: tokenizer files and dense tensors. */
function denseItems(m: Manifest): Item[] {
  return [
    ...m.files.map((f) => ({ name: f.name, file: f.name, offset: 0, bytes: f.bytes, sha256: f.sha256 })),
    ...m.dense.map((d) => ({ name: d.name, file: d.file, offset: d.offset, bytes: d.bytes, sha256: d.sha256 })),
  ];
}

/** The routed experts' records, layer by layer. */
function expertItems(m: Manifest): Item[] {
  return m.experts.flatMap((layer, l) => layer.map((r, e) => ({ ...r, name: expertRecordName(l, e) })));
}

/** Names of the records stored and verified so far. */
/**
 * Expert fetches in flight at most: a layer of a long prompt may want a hundred experts not stored yet, and each is a
 * 2 MB request (HTTP/2 would take them all at once, and the ones the reply needs first would wait behind the rest).
 */
export const MAX_REQUESTS = 8;

/** Runs at most `max` tasks at once, the others in the order they came. */
export class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly max: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((r) => this.waiting.push(r));
    else this.active++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next(); // the slot passes on
      else this.active--;
    }
  }
}

/** Moves the item of list[from..] with the highest priority to `from`, the others keeping their order (ties: the first). */
export function moveFirst<T extends { layer: number; expert: number }>(list: T[], from: number, priority: (layer: number, expert: number) => number): void {
  let best = from, top = -Infinity;
  for (let i = from; i < list.length; i++) {
    const p = priority(list[i].layer, list[i].expert);
    if (p > top) [top, best] = [p, i];
  }
  if (best > from) list.splice(from, 0, ...list.splice(best, 1));
}

async function storedRecords(db: UseStore): Promise<Set<string>> {
  return new Set((await keys(db)).filter((k): k is string => typeof k === 'string' && k.startsWith('ok:')).map((k) => k.slice(3)));
}

/** `n` bytes for people: "13.2 MB (13,156,352 bytes)". */
export function formatBytes(n: number): string {
  const [unit, scale] = n >= 1e9 ? ['GB', 1e9] : n >= 1e6 ? ['MB', 1e6] : n >= 1e3 ? ['kB', 1e3] : ['', 1];
  const exact = `${Math.max(0, n).toLocaleString('en-US')} bytes`;
  return unit ? `${(n / scale).toFixed(1)} ${unit} (${exact})` : exact;
}

/** The error for a download that does not fit: both sizes, exact, and what to do. */
export function quotaError(needed: number, available: number): QuotaExceededError {
  return new QuotaExceededError(
    `the model needs ${formatBytes(needed)} more browser storage, but only ${formatBytes(available)} are available to this site. ` +
      'Free some space (delete other models, or clear other sites\' data in the browser settings) and try again.',
    needed,
    available,
  );
}

/** `body` while holding the Web Lock `lock` (without Web Locks, at once). */
async function withLock<T>(lock: string, signal: AbortSignal | undefined, body: () => Promise<T>): Promise<T> {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks;
  return locks ? await locks.request(lock, signal ? { signal } : {}, body) : body();
}

/**
 * Download the packed model at `url` (a folder URL) into IndexedDB, verifying every record's SHA-256, and open it.
 * Resumable: records already stored and verified are skipped. Throws QuotaExceededError before writing anything
 * when the origin's free quota is smaller than what is left to fetch. Another tab downloading the same model is
 * waited for (no progress reports meanwhile); the download then continues from what that tab stored.
 */
export async function downloadModel(url: string, opts: DownloadOptions = {}): Promise<IdbModelStore> {
  const base = url.endsWith('/') ? url : `${url}/`;
  const name = opts.name ?? base;
  const res = await fetch(base + MANIFEST, { signal: opts.signal });
  if (!res.ok) throw new ModelLoadError(`${base}${MANIFEST}: HTTP ${res.status}. Check the model URL.`, MANIFEST);
  const text = await res.text();
  const m = parseManifest(text);
  opts.accept?.(m);
  const partial = opts.experts === 'background';
  await withLock(`q3n-download:${name}`, opts.signal, () => withDb(name, (db) => download(base, db, text, m, opts, partial ? denseItems(m) : items(m))));
  return IdbModelStore.open(name, { source: base, onWarning: opts.onWarning, partial });
}

/**
 * The records of `wanted` not yet stored, fetched and written by a few parallel workers (the quota is checked for
 * every record of `m` still missing: a partial download's experts follow).
 */
async function download(base: string, db: UseStore, text: string, m: Manifest, opts: DownloadOptions, wanted: Item[]): Promise<void> {
  const old = await get<string>('manifest', db);
  if (old !== undefined && old !== text) await clear(db); // the model at this URL changed: the stored records are another's
  const stored = old === text ? await storedRecords(db) : new Set<string>();
  const all = wanted;
  const todo = all.filter((r) => !stored.has(r.name));
  const bytesTotal = all.reduce((n, r) => n + r.bytes, 0);
  const needed = items(m).filter((r) => !stored.has(r.name)).reduce((n, r) => n + r.bytes, 0);

  if (needed > 0 && navigator.storage?.estimate) {
    const { quota = Infinity, usage = 0 } = await navigator.storage.estimate();
    if (needed > quota - usage) throw quotaError(needed, quota - usage);
  }
  if (old !== text) await set('manifest', text, db);
  await navigator.storage?.persist?.().catch(() => false);

  let bytesDone = bytesTotal - todo.reduce((n, r) => n + r.bytes, 0), recordsDone = all.length - todo.length, fetched = 0;
  const t0 = performance.now();
  const report = () => {
    const s = (performance.now() - t0) / 1000, rate = s > 0 ? fetched / s : 0;
    opts.onProgress?.({ bytesDone, bytesTotal, recordsDone, recordsTotal: all.length, bytesPerSecond: rate, etaSeconds: rate > 0 ? (bytesTotal - bytesDone) / rate : Infinity });
  };
  report();
  // A few fetches in flight; on the first failure the others stop taking records but store what they already
  // received, so a resumed download never fetches a record that arrived complete.
  let next = 0, failure: unknown;
  const worker = async () => {
    while (next < todo.length && failure === undefined) {
      const r = todo[next++];
      try {
        const bytes = await fetchRecord(base, r, opts.signal);
        await setMany(recordEntries(r.name, r.sha256, bytes), db);
      } catch (e) {
        failure ??= e;
        return;
      }
      bytesDone += r.bytes;
      fetched += r.bytes;
      recordsDone++;
      report();
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 4, todo.length) }, worker));
  if (failure !== undefined) throw failure;
}

/**
 * One record by HTTP Range, checked against its SHA-256 (one retry: a damaged transfer is not a damaged model).
 * `unreachable`: the error for a record the server did not give (network failure or HTTP status), instead of the
 * fetch's TypeError or a ModelLoadError.
 */
async function fetchRecord(base: string, r: Item, signal?: AbortSignal, unreachable?: (why: string, cause?: unknown) => Error): Promise<Uint8Array<ArrayBuffer>> {
  for (let attempt = 0; ; attempt++) {
    let res: Response;
    try {
      res = await fetch(base + r.file, { headers: { Range: `bytes=${r.offset}-${r.offset + r.bytes - 1}` }, signal, cache: 'no-store' });
    } catch (e) {
      throw unreachable && e instanceof TypeError ? unreachable(e.message, e) : e;
    }
    if (!res.ok && unreachable) throw unreachable(`HTTP ${res.status}`);
    if (!res.ok) throw new ModelLoadError(`${base}${r.file}: HTTP ${res.status} for ${r.name}. Check the model URL and try again.`, r.file, r.name);
    let bytes = new Uint8Array(await res.arrayBuffer());
    if (res.status === 200 && bytes.length !== r.bytes) bytes = bytes.slice(r.offset, r.offset + r.bytes); // server ignored Range
    if (bytes.length === r.bytes && (await sha256Hex(bytes)) === r.sha256) return bytes;
    if (attempt >= 1) throw new ModelLoadError(`${base}${r.file}: ${r.name} fails its SHA-256 check twice. The server's copy is damaged or changed: convert or upload it again.`, r.file, r.name);
  }
}

/**
 * A packed model stored by downloadModel, read record by record (PackedStore does lookups and hash checks). Every
 * record read through readDense/readExpert/readFile is checked against its SHA-256 (a hash costs less than the GPU
 * upload, and a damaged weight gives wrong text silently); a damaged one is deleted, fetched again from `source`
 * alone, stored, and reported through onWarning. readExperts (experts streamed during generation) is not checked.
 */
export class IdbModelStore extends PackedStore {
  private readonly byRange = new Map<string, Item>(); // `${file}@${offset}` -> the record
  protected override verifyReads = true;
  /** Partial: the expert records not stored yet (as far as this tab knows: another may have stored some). */
  private readonly missing: Set<string>;
  private readonly fetching = new Map<string, Promise<Uint8Array<ArrayBuffer>>>(); // on-demand and fill fetches, by record
  private demand = 0; // on-demand fetches in flight: the fill starts no record meanwhile (the line is theirs)
  private readonly requests = new Limiter(MAX_REQUESTS); // expert fetches in flight, on demand and the fill's
  private demandDone: (() => void)[] = [];

  private constructor(private readonly db: ModelDb, m: Manifest, private readonly name: string, private readonly opts: OpenOptions, missing: Set<string>) {
    super(m);
    for (const r of items(m)) this.byRange.set(`${r.file}@${r.offset}`, r);
    this.missing = missing;
  }

  /**
   * Open a completely downloaded model (or with `partial`, one whose dense part is); ModelLoadError says how many
   * records are missing otherwise.
   */
  static async open(name: string, opts: OpenOptions = {}): Promise<IdbModelStore> {
    const db = dbFor(name);
    try {
      const text = await get<string>('manifest', db);
      if (text === undefined) throw new ModelLoadError(`no model "${name}" in this browser's storage: download it first.`);
      const m = parseManifest(text);
      if (opts.partial && !opts.source) throw new Error('IdbModelStore.open: a partial store needs the `source` to fetch its missing experts from');
      const stored = await storedRecords(db), needed = opts.partial ? denseItems(m) : items(m);
      const missing = needed.filter((r) => !stored.has(r.name)).length;
      if (missing > 0) throw new ModelLoadError(`the stored model "${name}" is incomplete: ${missing} of ${needed.length} records missing. Resume the download.`);
      const experts = opts.partial ? expertItems(m).filter((r) => !stored.has(r.name)).map((r) => r.name) : [];
      return new IdbModelStore(db, m, name, opts, new Set(experts));
    } catch (e) {
      await db.close();
      throw e;
    }
  }

  /** Routed experts stored so far, of all. */
  get expertsStored(): { stored: number; total: number } {
    const total = this.m.experts.reduce((n, l) => n + l.length, 0);
    return { stored: total - this.missing.size, total };
  }

  hasExpert(layer: number, expert: number): boolean {
    return !this.missing.has(expertRecordName(layer, expert));
  }

  /** Every record stored (a partial store becomes complete once fill() or the on-demand fetches got every expert). */
  get complete(): boolean {
    return this.missing.size === 0;
  }

  /**
   * An expert record, from storage or (partial, not stored yet) fetched, stored and returned; one fetch per record.
   * `onDemand` (a token waits for it, not the fill): counted, so the fill holds back until none is in flight.
   */
  private async expertBytes(r: Item, onDemand = true): Promise<Uint8Array<ArrayBuffer> | undefined> {
    if (!this.missing.has(r.name)) return undefined; // stored: read it as any record
    let p = this.fetching.get(r.name);
    if (!p) {
      p = this.fetchMissing(r).finally(() => this.fetching.delete(r.name));
      this.fetching.set(r.name, p);
    }
    if (!onDemand) return p;
    this.demand++;
    try {
      return await p;
    } finally {
      if (--this.demand === 0) for (const done of this.demandDone.splice(0)) done();
    }
  }

  /** Resolves when no on-demand fetch is in flight. */
  private noDemand(): Promise<void> {
    return this.demand === 0 ? Promise.resolve() : new Promise((resolve) => this.demandDone.push(resolve));
  }

  /** Under the record's Web Lock: stored meanwhile (another tab)? read it; else fetch it from the source and store it. */
  private fetchMissing(r: Item, signal?: AbortSignal): Promise<Uint8Array<ArrayBuffer>> {
    return withLock(`q3n-record:${this.name}:${r.name}`, signal, async () => {
      if ((await get(`ok:${r.name}`, this.db)) !== undefined) {
        const blob = await storedBlob(this.db, r.name, r.bytes);
        if (blob) {
          this.missing.delete(r.name);
          return new Uint8Array(await blob.arrayBuffer());
        }
      }
      const bytes = await this.requests.run(() => fetchRecord(this.opts.source!, r, signal, (why, cause) => this.unavailable(r, why, cause)));
      await setMany(recordEntries(r.name, r.sha256, bytes), this.db);
      this.missing.delete(r.name);
      return bytes;
    });
  }

  private unavailable(r: Item, why: string, cause?: unknown): ExpertUnavailableError {
    const [, l, e] = /^L(\d+)\.E(\d+)$/.exec(r.name) ?? [];
    const { stored, total } = this.expertsStored;
    return new ExpertUnavailableError(
      `expert ${r.name} of ${this.name} is not stored in this browser yet and could not be fetched (${why}): ${stored} of ${total} experts ` +
        `(${((100 * stored) / total).toFixed(1)}%) are stored. Reconnect and send the message again; the conversation and everything stored are kept.`,
      Number(l), Number(e), stored, total, { cause });
  }

  /**
   * Fetch and store every expert still missing, a few at a time, the one `priority` rates highest first, else in an
   * order that covers every layer evenly (the first experts of each layer, then the next). Experts the model asks for meanwhile are fetched at once, and the
   * fill starts no record while any of them is in flight (a reply waiting for its experts gets the line). One tab fills at a time (a Web Lock); a tab that gets the lock later finds the first one's records.
   * Rejects on the first failure (the network gone: ExpertUnavailableError); what arrived stays stored.
   */
  async fill(opts: FillOptions = {}): Promise<void> {
    await withLock(`q3n-fill:${this.name}`, opts.signal, async () => {
      const stored = await storedRecords(this.db);
      for (const n of [...this.missing]) if (stored.has(n)) this.missing.delete(n);
      const all = expertItems(this.m), E = this.m.experts[0]?.length ?? 0, L = this.m.experts.length;
      const todo = all.map((_, i) => ({ ...all[(i % L) * E + Math.floor(i / L)], layer: i % L, expert: Math.floor(i / L) })).filter((r) => this.missing.has(r.name));
      const bytesTotal = all.reduce((n, r) => n + r.bytes, 0);
      let fetched = 0, failure: unknown, next = 0;
      const t0 = performance.now();
      const report = () => {
        const s = (performance.now() - t0) / 1000, rate = s > 0 ? fetched / s : 0;
        const left = this.missing.size, per = all.length ? bytesTotal / all.length : 0; // expert records share one size
        opts.onProgress?.({ bytesDone: bytesTotal - left * per, bytesTotal, expertsDone: all.length - left, expertsTotal: all.length, bytesPerSecond: rate, etaSeconds: rate > 0 ? (left * per) / rate : Infinity });
      };
      report();
      const worker = async () => {
        while (next < todo.length && failure === undefined) {
          await this.noDemand(); // a reply waiting for experts gets the line first
          if (opts.priority) moveFirst(todo, next, opts.priority);
          const r = todo[next++];
          if (!r || !this.missing.has(r.name)) continue; // fetched on demand meanwhile
          try {
            await this.expertBytes(r, false);
          } catch (e) {
            failure ??= e;
            return;
          }
          fetched += r.bytes;
          report();
        }
      };
      await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 4, todo.length) }, worker));
      if (failure !== undefined) throw failure;
    });
  }

  /** Record names whose stored index entry is complete and verified. */
  static async progress(name: string): Promise<{ stored: number; total: number } | undefined> {
    return withDb(name, async (db) => {
      const text = await get<string>('manifest', db);
      if (text === undefined) return undefined;
      return { stored: (await storedRecords(db)).size, total: items(parseManifest(text)).length };
    });
  }

  protected async readRange(file: string, offset: number, length: number): Promise<Uint8Array<ArrayBuffer>> {
    const r = this.byRange.get(`${file}@${offset}`);
    const fetched = r && (await this.expertBytes(r));
    if (fetched) return fetched;
    const blob = r && (await storedBlob(this.db, r.name, r.bytes));
    if (!blob) throw new ModelLoadError(`${file}@${offset}: no stored record. Download the model again.`, file, r?.name);
    return new Uint8Array((await blob.arrayBuffer()).slice(0, length));
  }

  /**
   * A record that read back wrong: drop it from the index first (a crash from here on leaves it missing, and a
   * download resumes it), fetch it alone from the source (verified), store it, and warn.
   */
  protected override async damaged(r: RecordEntry, what: string, why: string): Promise<Uint8Array<ArrayBuffer>> {
    const name = this.byRange.get(`${r.file}@${r.offset}`)?.name ?? what;
    const { source, onWarning = console.warn } = this.opts;
    if (!source) throw new ModelLoadError(`the stored ${name} ${why}: the stored model is damaged. Download it again.`, r.file, name);
    await delMany([`ok:${name}`, ...recordKeys(name, r.bytes)], this.db);
    const bytes = await fetchRecord(source, { ...r, name });
    await setMany(recordEntries(name, r.sha256, bytes), this.db);
    onWarning(`The stored copy of ${name} ${why}; it was fetched again from ${source}${r.file}.`);
    return bytes;
  }

  /** Several experts of one layer in one IndexedDB transaction (then one arrayBuffer() each). */
  async readExperts(layer: number, experts: number[]): Promise<Uint32Array<ArrayBuffer>[]> {
    if (experts.some((e) => this.missing.has(expertRecordName(layer, e)))) return Promise.all(experts.map((e) => this.readExpert(layer, e)));
    const size = this.m.experts[layer]?.[0]?.bytes ?? 0;
    const blobs = size <= PIECE_BYTES
      ? await getMany<Blob>(experts.map((e) => `rec:${expertRecordName(layer, e)}`), this.db)
      : await Promise.all(experts.map((e) => storedBlob(this.db, expertRecordName(layer, e), size)));
    return Promise.all(blobs.map(async (b, i) => {
      if (!b) throw new ModelLoadError(`expert (${layer}, ${experts[i]}) is not stored. Download the model again.`);
      return new Uint32Array(await b.arrayBuffer());
    }));
  }

  /** Re-hash every stored record against the manifest; returns the names that fail. */
  async verifyAll(): Promise<string[]> {
    const bad: string[] = [];
    for (const r of items(this.m)) {
      const blob = await storedBlob(this.db, r.name, r.bytes);
      if (!blob || (await sha256Hex(new Uint8Array(await blob.arrayBuffer()))) !== r.sha256) bad.push(r.name);
    }
    return bad;
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
