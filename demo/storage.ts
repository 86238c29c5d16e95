// The "Stored models" panel: the models the engine keeps in IndexedDB (src/store/browser-models.ts), their sizes
// and state, Delete for each, the saved chats of each model (src/store/browser-sessions.ts: their count and size,
// Delete), the site's quota (navigator.storage.estimate()) and persistent storage (navigator.storage.persist():
// the browser promises not to clear the data on its own).
import { deleteStoredModel, deleteStoredSession, listStoredModels, listStoredSessions, type StoredModelInfo, type StoredSessionInfo } from '../src/index.ts';

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

const $ = (id: string) => document.getElementById(id)!;

export interface StoragePanel {
  /** List the stored models and the quota again (after a load or a delete). */
  refresh(): Promise<void>;
}

/**
 * `inUse`: the name (folder URL) of the model this page loads; deleting it first calls `release`, which must stop
 * the engine (its worker holds the database open, and a streaming engine reads experts from it). `chatsDeleted`:
 * after the saved chats of a model were deleted here.
 */
export function storagePanel(inUse: string, release: () => Promise<void>, chatsDeleted: () => void): StoragePanel {
  const persistButton = $('persist') as HTMLButtonElement;
  // Remembered: a refresh that lands after the click (a chat saved, a load) must not hide the browser's answer.
  let refused = false;
  const showPersisted = (yes: boolean) => {
    $('persist-state').textContent = yes
      ? 'Persistent: the browser will not clear it.'
      : refused ? 'Refused by the browser (Chrome grants it to sites you bookmark or install).' : 'Not persistent (yet).';
    persistButton.disabled = yes;
  };
  persistButton.addEventListener('click', async () => {
    const granted = await navigator.storage.persist();
    refused = !granted;
    showPersisted(granted);
  });

  async function remove(m: StoredModelInfo, li: HTMLElement) {
    li.querySelector('button')!.disabled = true;
    if (m.name === inUse) await release();
    await deleteStoredModel(m.name, { onBlocked: () => (li.querySelector('.state')!.textContent = 'waiting for other tabs using it to close…') });
    await refresh();
  }

  async function refresh() {
    const [models, sessions] = await Promise.all([listStoredModels(), listStoredSessions()]);
    const items: HTMLElement[] = [];
    for (const m of models) {
      const li = document.createElement('li');
      const url = new URL(m.name);
      const share = `${Math.floor((100 * m.bytesStored) / Math.max(1, m.bytesTotal))} % of ${formatBytes(m.bytesTotal)}`;
      const state = m.complete ? 'complete' : m.usable ? `usable, experts still arriving: ${share}` : `partial: ${share}`;
      li.innerHTML = '<div class="name"></div><div class="row"><span class="size"></span><button type="button">Delete</button></div><div class="state hint"></div>';
      li.querySelector('.name')!.textContent = url.pathname.split('/').filter(Boolean).pop() ?? m.name;
      (li.querySelector('.name') as HTMLElement).title = m.name;
      li.querySelector('.size')!.textContent = formatBytes(m.bytesStored);
      li.querySelector('.state')!.textContent = `${state}${m.name === inUse ? ' · in use by this page' : ''} · ${url.origin === location.origin ? url.pathname : m.name}`;
      li.querySelector('button')!.addEventListener('click', () => void remove(m, li));
      items.push(li);
    }
    if (models.length === 0) items.push(Object.assign(document.createElement('li'), { className: 'hint', textContent: 'No models stored in this browser.' }));
    for (const [model, group] of byModel(sessions)) items.push(chatsItem(model, group));
    $('stored-list').replaceChildren(...items); // at once: refreshes may overlap
    const { usage = 0, quota = 0 } = (await navigator.storage?.estimate?.()) ?? {};
    $('quota').textContent = quota ? `This site uses ${formatBytes(usage)} of its ${formatBytes(quota)} quota (${formatBytes(quota - usage)} free).` : '';
    showPersisted((await navigator.storage?.persisted?.()) ?? false);
  }

  /** One entry for a model's saved chats: how many, their size, Delete. */
  function chatsItem(model: string, sessions: StoredSessionInfo[]): HTMLElement {
    const li = document.createElement('li');
    li.className = 'chats';
    li.innerHTML = '<div class="name"></div><div class="row"><span class="size"></span><button type="button">Delete</button></div><div class="state hint"></div>';
    li.querySelector('.name')!.textContent = model ? `Saved chats of ${new URL(model).pathname.split('/').filter(Boolean).pop() ?? model}` : 'Saved sessions of other pages';
    li.querySelector('.size')!.textContent = formatBytes(sessions.reduce((n, x) => n + x.bytes, 0));
    li.querySelector('.state')!.textContent = `${sessions.length} chat${sessions.length > 1 ? 's' : ''}, each with the model's state after it`;
    li.querySelector('button')!.addEventListener('click', async () => {
      li.querySelector('button')!.disabled = true;
      for (const x of byModel(await listStoredSessions()).get(model) ?? []) await deleteStoredSession(x.id); // as stored now
      chatsDeleted();
      await refresh();
    });
    return li;
  }

  return { refresh };
}

/** Saved sessions grouped by the model they were saved with (the demo stores it as meta.model). */
function byModel(sessions: StoredSessionInfo[]): Map<string, StoredSessionInfo[]> {
  const groups = new Map<string, StoredSessionInfo[]>();
  for (const x of sessions) {
    const model = typeof x.meta?.model === 'string' ? x.meta.model : ''; // '': saved by another page of the site
    groups.set(model, [...(groups.get(model) ?? []), x]);
  }
  return groups;
}
