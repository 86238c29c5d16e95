// The "Chats" panel: conversations kept across reloads. After each reply the page saves the engine's session
// (engine.saveSession: messages, tokens and the model's state after them) into IndexedDB (storeSession, under the
// chat's id); opening the page restores the last chat without running its tokens again, and the panel lists the
// chats of this model to open, rename or delete. The engine is shared by the site's tabs (createSharedEngine), a
// conversation each: a tab holds a Web Lock on the chat it shows, so a second tab starts a chat of its own instead of
// restoring (and then overwriting) the one the first tab shows, and cannot open it from the list.
import { deleteStoredSession, listStoredSessions, loadStoredSession, renameStoredSession, storeSession, type ChatMessage, type Engine, type StoredSessionInfo } from '../src/index.ts';
import { formatBytes } from './storage.ts';

const $ = (id: string) => document.getElementById(id)!;
const CURRENT = 'q3n-demo:chat'; // localStorage: the id of the chat the page shows

export interface ChatsPanel {
  /** The chat the page shows: its id (a new one after startNew). */
  readonly id: string;
  /** Save the engine's conversation under the current chat (after a reply). */
  save(engine: Engine, messages: ChatMessage[]): Promise<void>;
  /** Restore the current chat into the engine, if one of this model is stored: its messages and tokens. */
  restoreCurrent(engine: Engine): Promise<{ messages: ChatMessage[]; tokens: number } | undefined>;
  /** A fresh chat id (New chat). */
  startNew(): void;
  refresh(): Promise<void>;
}

/** `model`: the stored model's key, so each model lists its own chats; `open` shows a restored chat. */
export function chatsPanel(model: string, open: (engine: Engine, id: string) => Promise<void>, engineOf: () => Engine | undefined): ChatsPanel {
  let id = localStorage.getItem(CURRENT) ?? newId();
  localStorage.setItem(CURRENT, id);

  function newId(): string {
    return `chat-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  }

  const mine = async () => (await listStoredSessions()).filter((s) => s.meta?.model === model);
  const lockName = (chat: string) => `q3n-demo-chat ${chat}`;

  let release = () => {};
  /** Show chat `next` in this tab, unless another tab shows it. */
  function switchTo(next: string): Promise<boolean> {
    const previous = release;
    const taken = (lock: Lock | null) => {
      if (!lock) return undefined;
      previous();
      id = next;
      localStorage.setItem(CURRENT, id);
      return new Promise<void>((r) => (release = r));
    };
    if (!navigator.locks) return Promise.resolve(taken({} as Lock) !== undefined);
    return new Promise((done) => void navigator.locks.request(lockName(next), { ifAvailable: true }, (lock) => { done(lock !== null); return taken(lock); }));
  }

  async function refresh() {
    const held = new Set((await navigator.locks?.query())?.held?.map((l) => l.name) ?? []);
    const items = (await mine()).map((s) => item(s, s.id !== id && held.has(lockName(s.id))));
    const list = $('chat-list'); // replaced at once: refreshes may overlap
    list.replaceChildren(...items);
    if (!items.length) list.innerHTML = '<li class="hint">No saved chats yet: they appear after the first reply.</li>';
  }

  function item(s: StoredSessionInfo, elsewhere: boolean): HTMLElement {
    const li = document.createElement('li');
    li.innerHTML = '<div class="name"></div><div class="row"><span class="size"></span><button type="button" data-act="open">Open</button>'
      + '<button type="button" data-act="rename">Rename</button><button type="button" data-act="delete">Delete</button></div>';
    li.querySelector('.name')!.textContent = `${s.title}${s.id === id ? ' (this chat)' : elsewhere ? ' (open in another tab)' : ''}`;
    (li.querySelector('[data-act="open"]') as HTMLButtonElement).disabled = elsewhere;
    li.querySelector('.size')!.textContent = `${formatBytes(s.bytes)} · ${new Date(s.savedAt).toLocaleString()}`;
    li.dataset.id = s.id;
    li.addEventListener('click', async (e) => {
      const act = (e.target as HTMLElement).dataset.act, engine = engineOf();
      if (act === 'open' && engine) {
        if (await switchTo(s.id)) await open(engine, id);
      } else if (act === 'rename') {
        const title = prompt('Chat name', s.title);
        if (title) await renameStoredSession(s.id, title);
      } else if (act === 'delete') {
        await deleteStoredSession(s.id);
      }
      await refresh();
    });
    return li;
  }

  return {
    get id() { return id; },
    async save(engine, messages) {
      const chat = id; // New chat may start another while the engine saves this one
      const first = messages.find((m) => m.role === 'user')?.content ?? 'Chat';
      await storeSession(chat, await engine.saveSession(), { title: first.length > 40 ? `${first.slice(0, 40)}…` : first, meta: { model } });
      await refresh();
    },
    async restoreCurrent(engine) {
      if (!(await switchTo(id))) { // the last chat is open in another tab: this one starts its own
        await switchTo(newId());
        void refresh();
        return undefined;
      }
      const stored = (await mine()).find((s) => s.id === id);
      const blob = stored && (await loadStoredSession(id));
      return blob ? engine.restoreSession(blob) : undefined;
    },
    startNew() {
      id = newId(); // at once: a reply sent right after is saved under the new chat
      void switchTo(id).then(refresh);
    },
    refresh,
  };
}
