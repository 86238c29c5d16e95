// Browser side of test/browser/store.test.ts: download brown-tiny-q4 (served by Vite from public/) into
// IndexedDB through src/store/browser.ts, then run the model from there, fully resident or streaming experts.
import { GpuContext } from '../../../src/gpu/context.ts';
import { expertStats, loadModel } from '../../../src/cache/load.ts';
import { downloadModel, IdbModelStore, type DownloadProgress } from '../../../src/store/browser.ts';
import { storeSource } from '../../../src/store/store.ts';
import { deleteStoredSession, listStoredSessions, loadStoredSession, renameStoredSession, storeSession, type StoredSessionInfo } from '../../../src/store/browser-sessions.ts';
import type { QuotaExceededError } from '../../../src/errors.ts';
import type { ExpertCacheStats } from '../../../src/cache/expert-cache.ts';
import { browserDevice } from './gpu.ts';

const URL = '/models/brown-tiny-q4/';
const NAME = 'brown-tiny-q4';

const storeTest = {
  /** Download (or resume); a failure comes back as its message, with the progress events seen so far. */
  async download(): Promise<{ ok: boolean; error?: string; events: DownloadProgress[]; bad?: string[] }> {
    const events: DownloadProgress[] = [];
    try {
      const store = await downloadModel(URL, { name: NAME, concurrency: 2, onProgress: (p) => events.push(p) });
      return { ok: true, events, bad: await store.verifyAll() };
    } catch (e) {
      return { ok: false, error: `${(e as Error).name}: ${(e as Error).message}`, events };
    }
  },

  progress: () => IdbModelStore.progress(NAME),

  /** A download into an origin whose estimate() reports `free` bytes: the error thrown before any record is fetched. */
  async quota(free: number): Promise<{ name: string; needed?: number; available?: number }> {
    const real = navigator.storage.estimate.bind(navigator.storage);
    navigator.storage.estimate = async () => ({ quota: 1000 + free, usage: 1000 });
    try {
      await downloadModel(URL, { name: 'quota-test' });
      return { name: 'none' };
    } catch (e) {
      const q = e as QuotaExceededError;
      return { name: q.name, needed: q.neededBytes, available: q.availableBytes };
    } finally {
      navigator.storage.estimate = real;
    }
  },

  /** Two sessions stored, listed newest first, one renamed; returns the list and whether a Blob reads back bytewise. */
  async storeSessions(): Promise<{ list: StoredSessionInfo[]; same: boolean }> {
    const a = new Blob([new Uint8Array([1, 2, 3, 4, 5])]), b = new Blob([new Uint8Array(1000).fill(9)]);
    await storeSession('chat-a', a, { title: 'first', meta: { model: URL } });
    await new Promise((r) => setTimeout(r, 5));
    await storeSession('chat-b', b, { title: 'second' });
    await renameStoredSession('chat-a', 'first, renamed');
    const back = await loadStoredSession('chat-a');
    const same = !!back && new Uint8Array(await back.arrayBuffer()).join() === '1,2,3,4,5';
    return { list: await listStoredSessions(), same };
  },

  /** After a reload: the list, then one deleted, then the list again, and a missing id. */
  async sessionsAfterReload(): Promise<{ before: StoredSessionInfo[]; after: StoredSessionInfo[]; missing: boolean; renameMissing: string }> {
    const before = await listStoredSessions();
    await deleteStoredSession('chat-b');
    const after = await listStoredSessions();
    const renameMissing = await renameStoredSession('chat-b', 'x').then(() => '', (e: Error) => e.message);
    return { before, after, missing: (await loadStoredSession('chat-b')) === undefined, renameMissing };
  },

  /** Logits (T, V) of `ids` from the stored model; streaming experts when expertCacheBytes is given. */
  async logits(ids: number[], expertCacheBytes?: number): Promise<{ logits: number[]; stats?: ExpertCacheStats }> {
    const store = await IdbModelStore.open(NAME);
    const src = { ...(await storeSource(store)), expertsOfLayer: (l: number, es: number[]) => store.readExperts(l, es) };
    const { device } = await browserDevice();
    const model = await loadModel(new GpuContext(device), src, { maxContext: 64, maxTokensPerStep: 16, expertCacheBytes });
    const out = await model.forward(ids, { logits: 'all' });
    const stats = expertStats(model);
    device.destroy();
    return { logits: Array.from(out), stats };
  },
};

declare global {
  interface Window {
    storeTest: typeof storeTest;
  }
}
window.storeTest = storeTest;
