// Saved conversations (engine.saveSession's Blobs) in this browser's IndexedDB, beside the models: database
// `q3n-sessions`, object store `sessions`, one value per session { info, blob } under its id. The page decides the
// id (one per chat) and the title; sizes and times are recorded here. Plain IndexedDB, as browser-models.ts, so no
// connection stays open to block a deletion.
import { request } from './idb-request.ts';

const DB = 'q3n-sessions';
const STORE = 'sessions';

export interface StoredSessionInfo {
  id: string;
  /** What the page calls the chat (renameStoredSession changes it). */
  title: string;
  /** Bytes of the saved session. */
  bytes: number;
  /** When it was stored (ms since the epoch). */
  savedAt: number;
  /** What the page passed along (e.g. the model's URL); structured-cloneable. */
  meta?: Record<string, unknown>;
}

interface Entry { info: StoredSessionInfo; blob: Blob }

/** Store (or replace) a saved session under `id`. */
export async function storeSession(id: string, blob: Blob, opts: { title?: string; meta?: Record<string, unknown> } = {}): Promise<StoredSessionInfo> {
  const old = await withStore('readonly', (s) => request<Entry | undefined>(s.get(id)));
  const info: StoredSessionInfo = { id, title: opts.title ?? old?.info.title ?? id, bytes: blob.size, savedAt: Date.now(), ...(opts.meta ?? old?.info.meta ? { meta: opts.meta ?? old?.info.meta } : {}) };
  await withStore('readwrite', (s) => request(s.put({ info, blob } satisfies Entry, id)));
  return info;
}

/** Every stored session, newest first. */
export async function listStoredSessions(): Promise<StoredSessionInfo[]> {
  const entries = await withStore('readonly', (s) => request<Entry[]>(s.getAll()));
  return entries.map((e) => e.info).sort((a, b) => b.savedAt - a.savedAt);
}

/** A stored session's Blob (for engine.restoreSession), or undefined. */
export async function loadStoredSession(id: string): Promise<Blob | undefined> {
  return (await withStore('readonly', (s) => request<Entry | undefined>(s.get(id))))?.blob;
}

export async function renameStoredSession(id: string, title: string): Promise<void> {
  await withStore('readwrite', async (s) => {
    const e = await request<Entry | undefined>(s.get(id));
    if (!e) throw new RangeError(`no stored session "${id}"`);
    await request(s.put({ ...e, info: { ...e.info, title } }, id));
  });
}

export async function deleteStoredSession(id: string): Promise<void> {
  await withStore('readwrite', (s) => request(s.delete(id)));
}

async function withStore<T>(mode: IDBTransactionMode, body: (s: IDBObjectStore) => Promise<T>): Promise<T> {
  const open = indexedDB.open(DB, 1);
  open.onupgradeneeded = () => open.result.createObjectStore(STORE);
  const db = await request(open);
  try {
    const tx = db.transaction(STORE, mode);
    const done = new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
    const out = await body(tx.objectStore(STORE));
    await done;
    return out;
  } finally {
    db.close();
  }
}
