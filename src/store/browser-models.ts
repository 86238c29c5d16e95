// The models downloadModel (src/store/browser.ts) keeps in this browser's IndexedDB: list them with their sizes,
// delete one. Read-only over browser.ts's layout: database `q3n:<name>` (name: the model folder's absolute URL),
// object store `records`, the manifest's text under 'manifest', and an 'ok:<record>' key for every record that is
// stored and verified. A model is complete when every record of its manifest has its 'ok:' key.
//
// Plain IndexedDB, not idb-keyval: idb-keyval keeps its connection open for the page's lifetime, and an open
// connection in this page would block deleteDatabase.
import { request } from './idb-request.ts';
import { expertRecordName } from './manifest.ts';

const PREFIX = 'q3n:';
const RECORDS = 'records';

export interface StoredModelInfo {
  /** The database's name without `q3n:`: the model folder's absolute URL (what the engine's `cache: true` uses). */
  name: string;
  /** Bytes of the records stored and verified so far. */
  bytesStored: number;
  /** Bytes of the whole model (records of the manifest); 0 when the manifest is missing or unreadable. */
  bytesTotal: number;
  /** Bytes of the model layers' routed experts (not the MTP layer's), part of bytesTotal: what an expert-cache budget is a share of. */
  expertBytes: number;
  recordsStored: number;
  recordsTotal: number;
  /** Every record is stored: the model loads with no network. */
  complete: boolean;
  /**
   * The tokenizer files and dense tensors are stored: an engine with `backgroundExperts` starts from this copy and
   * fetches (then stores) the experts still missing.
   */
  usable: boolean;
}

/** Every model stored by downloadModel in this origin, complete or partial, sorted by name. */
export async function listStoredModels(): Promise<StoredModelInfo[]> {
  if (!globalThis.indexedDB?.databases) return []; // Firefox < 126: no way to list databases
  const names = (await indexedDB.databases()).map((d) => d.name ?? '').filter((n) => n.startsWith(PREFIX));
  const infos = await Promise.all(names.map((n) => readInfo(n.slice(PREFIX.length))));
  return infos.filter((i): i is StoredModelInfo => i !== undefined).sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * Delete a stored model's database. IndexedDB finishes the deletion only once every open connection to it is
 * closed (an engine in a worker of this or another tab): `onBlocked` is called while that is what it waits for.
 */
export function deleteStoredModel(name: string, opts: { onBlocked?: () => void } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.deleteDatabase(PREFIX + name);
    req.onsuccess = () => resolve();
    req.onerror = () => reject(req.error);
    req.onblocked = () => opts.onBlocked?.();
  });
}

/** Sizes from the stored manifest and the 'ok:' keys; undefined for a database that is not a stored model. */
async function readInfo(name: string): Promise<StoredModelInfo | undefined> {
  const db = await request(indexedDB.open(PREFIX + name));
  try {
    if (!db.objectStoreNames.contains(RECORDS)) return undefined;
    const store = db.transaction(RECORDS, 'readonly').objectStore(RECORDS);
    const [text, keys] = await Promise.all([request(store.get('manifest')), request(store.getAllKeys())]);
    const ok = new Set(keys.filter((k): k is string => typeof k === 'string' && k.startsWith('ok:')).map((k) => k.slice(3)));
    const records = typeof text === 'string' ? manifestRecords(text) : [];
    const stored = records.filter((r) => ok.has(r.name));
    const dense = records.filter((r) => !r.expert && !/^L\d+\.E\d+$/.test(r.name));
    const sum = (rs: { bytes: number }[]) => rs.reduce((n, r) => n + r.bytes, 0);
    return {
      name,
      bytesStored: sum(stored),
      bytesTotal: sum(records),
      expertBytes: sum(records.filter((r) => r.expert)),
      recordsStored: stored.length,
      recordsTotal: records.length,
      complete: records.length > 0 && stored.length === records.length,
      usable: records.length > 0 && dense.every((r) => ok.has(r.name)),
    };
  } finally {
    db.close();
  }
}

/** The records downloadModel stores for a manifest (the same names as browser.ts), or none if it does not parse. */
function manifestRecords(text: string): { name: string; bytes: number; expert: boolean }[] {
  try {
    const m = JSON.parse(text) as { files: { name: string; bytes: number }[]; dense: { name: string; bytes: number }[]; experts: { bytes: number }[][]; mtp?: boolean };
    const layers = m.experts.length - (m.mtp === true ? 1 : 0); // the MTP layer's experts come last
    return [
      ...m.files.map((f) => ({ name: f.name, bytes: f.bytes, expert: false })),
      ...m.dense.map((d) => ({ name: d.name, bytes: d.bytes, expert: false })),
      ...m.experts.flatMap((layer, l) => layer.map((r, e) => ({ name: expertRecordName(l, e), bytes: r.bytes, expert: l < layers }))),
    ];
  } catch {
    return [];
  }
}
