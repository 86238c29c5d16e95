// The chat demo: loads the packed model in the site's SharedWorker (createSharedEngine with the library's worker
// entry, src/worker.ts: a second tab uses the model the first one loaded, each with its own chat; a dedicated worker
// where SharedWorker is missing), keeping it in IndexedDB (`cache: true`: the first visit downloads it, later ones
// read it from there, offline too), streams
// replies into the message list, and shows what the engine reports (load progress, usage, the expert cache as a
// heatmap). Built sites register a service worker (demo/sw.js) that keeps the page itself for offline visits.
// No WebGPU: an explanation panel instead of the chat. `window.demo` exposes the state to test/browser/demo.test.ts.
import type { ExpertCacheStats } from '../src/cache/expert-cache.ts';
import { createSharedEngine, listStoredModels, loadStoredSession, type ChatCompletionChunk, type ChatMessage, type CompletionUsage, type FinishReason, type Engine, type LoadProgress, type SharedEngine } from '../src/index.ts';
import workerUrl from '../src/worker.ts?worker&url';
import { drawHeatmap, useSince } from './heatmap.ts';
import { renderMarkdown } from './markdown.ts';
import { formatBytes, storagePanel } from './storage.ts';
import { chatsPanel } from './chats.ts';

// ?model=: the folder to load, relative to this page (the dev server and the static build (dist/demo) both serve
// public/models/ at /models/). ?experts=: the GPU expert budget in percent of the model's experts. The default,
// 50 %, streams half of brown-tiny's experts so the cache's numbers and heatmap have something to show (the real
// 80B model streams on most GPUs anyway: its int4 experts take ~40 GB).
const params = new URLSearchParams(location.search);
const MODEL_URL = params.get('model') ?? '../models/brown-tiny-q4/';
const EXPERT_PERCENT = Number(params.get('experts') ?? 50);
// ?draft=1..3: speculative decoding with the model's MTP layer, that many draft tokens a step (default off).
const DRAFT_TOKENS = [1, 2, 3].includes(Number(params.get('draft'))) ? Number(params.get('draft')) : 0;
// ?routing=N: cache-aware routing when experts stream, each token keeping its N best picks (default: exact routing).
const ROUTING_EXACT = [3, 5, 7].includes(Number(params.get('routing'))) ? Number(params.get('routing')) : 0;
/** The name the engine stores the model under: its folder's absolute URL. */
const MODEL_KEY = new URL(MODEL_URL.endsWith('/') ? MODEL_URL : `${MODEL_URL}/`, location.href).href;

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const promptBox = $<HTMLTextAreaElement>('prompt');
const sendButton = $<HTMLButtonElement>('send');
const stopButton = $<HTMLButtonElement>('stop');
const newChatButton = $<HTMLButtonElement>('new-chat');

const state = {
  ready: false,
  busy: false,
  replies: 0,
  /** Where the weights came from: 'network' (downloaded into IndexedDB now) or 'storage' (already there). */
  source: null as 'network' | 'storage' | null,
  /** A service worker holds the app shell: the page opens with the network off. */
  offlineReady: false,
  lastFinish: null as FinishReason | null,
  lastUsage: null as CompletionUsage | null,
  /** Tokens of the chat restored at load (or opened from the Chats panel) that the model did not run again. */
  restoredTokens: 0,
  /** Replies whose conversation is saved (the Chats panel). */
  saved: 0,
  /** Where the engine runs: the site's SharedWorker, or a dedicated worker (engineNote says why). */
  engineMode: null as 'shared' | 'dedicated' | null,
  engineNote: '',
};
declare global {
  interface Window {
    demo: typeof state;
  }
}
window.demo = state;

let engine: SharedEngine | undefined;
let messages: ChatMessage[] = [];
let previousCache: ExpertCacheStats | undefined; // the expert cache's totals after the previous reply

function showNoWebGPU(detail: string) {
  $('app').hidden = true;
  $('no-webgpu').hidden = false;
  $('no-webgpu-detail').textContent = detail;
}

const seconds = (s: number) => (s < 90 ? `${Math.ceil(s)} s` : `${Math.ceil(s / 60)} min`);

/** The first load's download shows bytes, rate and time left; later loads only read IndexedDB. */
function progressReporter() {
  let download: { t0: number; bytes0: number } | undefined;
  const report = (p: LoadProgress) => {
    if (p.phase === 'fill') return showFill(p);
    if (state.ready) return; // a late progress message (it travels on its own channel)
    $<HTMLProgressElement>('load-bar').value = p.total ? p.loaded / p.total : 0;
    let text = p.text, bytes = p.total ? `${formatBytes(p.loaded)} / ${formatBytes(p.total)}` : '';
    if (p.phase === 'download' && p.loaded < p.total) {
      download ??= { t0: performance.now(), bytes0: p.loaded };
      const s = (performance.now() - download.t0) / 1000, rate = s > 0.2 ? (p.loaded - download.bytes0) / s : 0;
      text = 'Downloading what the model needs to start (first visit only); its experts follow while you chat…';
      if (rate > 0) bytes += ` · ${formatBytes(rate)}/s · ${seconds((p.total - p.loaded) / rate)} left`;
    } else if (p.phase === 'download') {
      text = 'The model is stored in this browser: no download needed.';
    } else if (p.phase === 'fetch') {
      text = `Loading the weights onto the GPU${download ? '' : " from this browser's storage (no download)"}…`;
    }
    $('load-text').textContent = text;
    $('load-bytes').textContent = bytes;
  };
  return { report, downloaded: () => download !== undefined };
}

/**
 * The background fill (backgroundExperts), after 'ready': its own line under the load message, until every expert
 * is stored (the Storage panel then says "complete").
 */
function showFill(p: LoadProgress) {
  const done = p.loaded >= p.total;
  $('fill-text').hidden = false;
  $('fill-text').textContent = done
    ? 'The whole model is stored in this browser now: next visits load it with no network.'
    : `${p.text.replace(/^Storing experts in the background/, 'Storing the rest of the model while you chat')} (${Math.floor((100 * p.loaded) / Math.max(1, p.total))} %). Until then replies fetch the experts they need, and stay slower.`;
  if (done) void storage.refresh();
}

/** The expert-cache budget in bytes for EXPERT_PERCENT, from the stored manifest or the served one. */
async function expertCacheBytes(storedExpertBytes?: number): Promise<number | undefined> {
  if (!(EXPERT_PERCENT > 0 && EXPERT_PERCENT < 100)) return undefined; // all resident
  let total = storedExpertBytes;
  if (!total) {
    const m = (await (await fetch(new URL('manifest.json', MODEL_KEY))).json()) as { experts: { bytes: number }[][]; mtp?: boolean };
    // the model layers' experts: the budget is shared over them (the MTP layer's, when packed, come last)
    total = m.experts.slice(0, m.experts.length - (m.mtp ? 1 : 0)).flat().reduce((n, r) => n + r.bytes, 0);
  }
  return Math.ceil((total * EXPERT_PERCENT) / 100);
}

const storage = storagePanel(MODEL_KEY, async () => {
  // The page's model is being deleted: leave its engine (the worker holds the database open while a tab uses it).
  await engine?.unload();
  engine = undefined;
  state.ready = false;
  showOfflineReady();
  setBusy(false);
  promptBox.disabled = sendButton.disabled = newChatButton.disabled = true;
  $('load').className = 'done error'; // no progress bar, the message in red
  $('load-text').textContent = 'The model was deleted from this browser. Press Load in Settings to download it again.';
  $('load-bytes').textContent = '';
}, () => void chats.refresh());

const chats = chatsPanel(MODEL_KEY, openChat, () => engine);

/** Show a conversation's messages (a restored chat). */
function showConversation(list: ChatMessage[]) {
  messages = list.slice();
  $('messages').replaceChildren();
  for (const m of list) addMessage(m.role === 'user' ? 'user' : 'assistant', m.content);
}

/** Open a stored chat from the Chats panel: its state goes back onto the GPU, its messages into the list. */
async function openChat(e: Engine, id: string) {
  const blob = await loadStoredSession(id);
  if (!blob) return;
  const r = await e.restoreSession(blob);
  showConversation(r.messages);
  state.restoredTokens = r.tokens;
  $('stats-list').innerHTML = `<dt>Restored</dt><dd>${r.tokens} tokens, not run again</dd>`;
}

async function load() {
  $<HTMLInputElement>('model-url').value = MODEL_URL;
  $<HTMLSelectElement>('expert-budget').value = String(EXPERT_PERCENT);
  $<HTMLSelectElement>('routing').value = String(ROUTING_EXACT);
  if (!('gpu' in navigator)) return showNoWebGPU('navigator.gpu is missing: WebGPU is off or unsupported in this browser.');
  void storage.refresh();
  const stored = (await listStoredModels()).find((m) => m.name === MODEL_KEY);
  const progress = progressReporter();
  try {
    engine = await createSharedEngine(new URL(workerUrl, location.href), { model: MODEL_URL, cache: true, backgroundExperts: true, expertCacheBytes: await expertCacheBytes(stored?.expertBytes), onProgress: progress.report, ...(DRAFT_TOKENS ? { speculative: { draftTokens: DRAFT_TOKENS } } : {}), ...(ROUTING_EXACT ? { cacheAwareRouting: { exact: ROUTING_EXACT } } : {}) });
  } catch (e) {
    const err = e as Error;
    if (err.name === 'WebGPUNotAvailableError') return showNoWebGPU(err.message);
    $('load-text').textContent = `Could not load the model: ${err.name}: ${err.message}`;
    $('load').classList.add('error');
    throw e;
  }
  state.source = progress.downloaded() ? 'network' : 'storage';
  state.ready = true;
  state.engineMode = engine.mode;
  const tabs = (await engine.info()).clients;
  state.engineNote = engine.mode === 'dedicated' ? ` (This tab runs its own copy of the model: ${engine.fallbackReason}.)`
    : tabs > 1 ? ` Shared with ${tabs - 1} other tab${tabs > 2 ? 's' : ''} of this site: one copy on the GPU, a chat each.` : '';
  $('load').classList.add('done');
  $('load-text').textContent = (state.source === 'network'
    ? 'Ready to chat: the model is stored in this browser as far as it needs to start; next visits load it from there.'
    : tabs > 1 ? 'Model already loaded by another tab: ready to chat.' : "Model loaded from this browser's storage (no download): ready to chat.") + state.engineNote;
  $('load-bytes').textContent = '';
  $<HTMLProgressElement>('load-bar').value = 1;
  setBusy(false);
  showOfflineReady();
  await restoreChat();
  promptBox.focus();
  void storage.refresh();
}

/** The chat this page showed before the reload, back on the GPU without running its tokens again. */
async function restoreChat() {
  try {
    const r = await chats.restoreCurrent(engine!);
    if (r) {
      showConversation(r.messages);
      state.restoredTokens = r.tokens;
      $('load-text').textContent += ` Your chat is restored (${r.tokens} tokens, not run again).`;
      $('stats-list').innerHTML = `<dt>Restored</dt><dd>${r.tokens} tokens, not run again</dd>`;
    }
  } catch (e) {
    console.warn(`The saved chat could not be restored (${(e as Error).message}): starting a new one.`);
    chats.startNew();
  }
  void chats.refresh();
}

function setBusy(busy: boolean) {
  state.busy = busy;
  promptBox.disabled = sendButton.disabled = newChatButton.disabled = busy;
  stopButton.disabled = !busy;
}

function addMessage(role: 'user' | 'assistant', text: string): HTMLElement {
  const li = document.createElement('li');
  li.className = role;
  li.innerHTML = `<div class="who">${role === 'user' ? 'You' : 'Model'}</div><div class="body"></div><div class="meta"></div>`;
  li.querySelector('.body')!.innerHTML = renderMarkdown(text);
  $('messages').append(li);
  li.scrollIntoView({ block: 'end' });
  return li;
}

const FINISH_TEXT: Record<FinishReason, string> = { stop: 'finished', length: 'hit max tokens', abort: 'stopped' };
const tokens = (n: number) => `${n} token${n === 1 ? '' : 's'}`;
const number = (id: string) => Number($<HTMLInputElement>(id).value);

async function send(content: string) {
  setBusy(true);
  messages.push({ role: 'user', content });
  addMessage('user', content);
  const li = addMessage('assistant', '');
  li.classList.add('streaming');
  const body = li.querySelector('.body')!;
  let reply = '', finish: FinishReason | null = null, usage: CompletionUsage | undefined;
  try {
    const chunks = await engine!.chat.completions.create({
      messages,
      stream: true,
      temperature: number('temperature'),
      top_p: number('top-p'),
      max_tokens: number('max-tokens'),
      // a long prompt: say how far its prefill is until the first token replaces it
      onPrefillProgress: ({ done, total }) => {
        if (!reply && done < total) li.querySelector('.meta')!.textContent = `reading the prompt: ${Math.floor((100 * done) / total)} % of ${tokens(total)}`;
      },
    });
    for await (const c of chunks as AsyncIterable<ChatCompletionChunk>) {
      reply += c.choices[0].delta.content ?? '';
      body.innerHTML = renderMarkdown(reply);
      finish = c.choices[0].finish_reason ?? finish;
      usage = c.usage ?? usage;
      li.scrollIntoView({ block: 'end' });
    }
  } catch (e) {
    const err = e as Error;
    li.classList.add('error');
    body.textContent = `${err.name}: ${err.message}`;
    messages.pop(); // the turn failed: leave it out of the conversation
    setBusy(false);
    return;
  }
  li.classList.remove('streaming');
  messages.push({ role: 'assistant', content: reply });
  const why = FINISH_TEXT[finish ?? 'stop'];
  li.querySelector('.meta')!.textContent = [why, usage && tokens(usage.completion_tokens), usage && usage.completion_tokens > 1 && `${usage.decode_tokens_per_s.toFixed(1)} tok/s`]
    .filter(Boolean)
    .join(' · ');
  li.dataset.finish = finish ?? '';
  if (usage) showStats(usage, finish);
  state.lastFinish = finish;
  state.lastUsage = usage ?? null;
  state.replies++;
  setBusy(false);
  promptBox.focus();
  // Saved in the background: the engine queues a next request behind the save, so the saved state is this reply's.
  chats.save(engine!, messages.slice()).then(
    () => {
      state.saved++;
      void storage.refresh(); // the chat's size in the stored-models panel
    },
    (e: Error) => console.warn(`This chat could not be saved for the next visit: ${e.message}`),
  );
}

function showStats(u: CompletionUsage, finish: FinishReason | null) {
  const rows: [string, string][] = [
    ['Finish', finish ? `${finish} (${FINISH_TEXT[finish]})` : '?'],
    ['Prompt tokens', `${u.prompt_tokens}${u.cached_prompt_tokens ? ` (${u.cached_prompt_tokens} reused)` : ''}`],
    ['Reply tokens', String(u.completion_tokens)],
    ...(u.context_tokens ? [['Context', `${u.total_tokens.toLocaleString('en-US')} of ${u.context_tokens.toLocaleString('en-US')} tokens (${((100 * u.total_tokens) / u.context_tokens).toFixed(1)} %)`] as [string, string]] : []),
    ['Prefill speed', `${u.prefill_tokens_per_s.toFixed(1)} tok/s`],
    ['Decode speed', u.completion_tokens > 1 ? `${u.decode_tokens_per_s.toFixed(1)} tok/s` : '—'],
  ];
  const spec = u.speculative;
  if (spec) {
    rows.push(['Speculative', spec.rounds
      ? `${spec.accepted} of ${spec.drafted} drafts accepted (${(100 * spec.acceptance_rate).toFixed(0)} %), ${spec.mean_accepted_length.toFixed(2)} tokens a step${spec.plain_tokens ? `, ${spec.plain_tokens} without` : ''}`
      : 'off for this reply']);
  }
  // The expert cache counts since the model loaded: this reply's share is the difference from the previous reply.
  const cache = u.expert_cache as ExpertCacheStats | undefined;
  if (cache) {
    const t = cache.totals, p = previousCache?.totals;
    const hits = t.hits - (p?.hits ?? 0), misses = t.misses - (p?.misses ?? 0), uploaded = t.bytesUploaded - (p?.bytesUploaded ?? 0);
    const run = Math.max(1, u.prompt_tokens - u.cached_prompt_tokens + Math.max(0, u.completion_tokens - 1)); // tokens through the model
    rows.push(
      ['Experts on GPU', `${cache.slotsPerLayer} of ${cache.experts} per layer`],
      ['Expert cache hits', hits + misses ? `${((100 * hits) / (hits + misses)).toFixed(1)} %` : '—'],
      ['RAM tier', `${formatBytes(cache.ramCacheBytes)}: ${misses ? `${((100 * (t.ramHits - (p?.ramHits ?? 0))) / misses).toFixed(1)} % of misses` : '—'}`],
      ['Streamed per token', `${formatBytes(uploaded / run)} of experts`],
    );
    const replaced = t.replaced - (p?.replaced ?? 0);
    if (replaced > 0) rows.push(['Picks replaced', `${(replaced / run / cache.lastStep.length).toFixed(2)} a token a layer (experts on the GPU for the router's)`]);
    const use = useSince(cache.expertUse, previousCache?.expertUse);
    drawHeatmap($<HTMLCanvasElement>('heatmap'), use);
    $('heatmap-layers').textContent = `0–${use.length - 1} ↓`;
    $('heatmap-experts').textContent = `0–${cache.experts - 1} →`;
    previousCache = cache;
  } else {
    rows.push(['Experts on GPU', 'all (nothing streams)']);
  }
  $('heatmap-box').hidden = !cache;
  $('heatmap-off').hidden = !!cache;
  if (u.gpu_memory_bytes) rows.push(['GPU memory', `${formatBytes(u.gpu_memory_bytes)} (engine's buffers)`]);
  const list = $('stats-list');
  list.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement('dt'), dd = document.createElement('dd');
    dt.textContent = k;
    dd.textContent = v;
    list.append(dt, dd);
  }
}

$('composer').addEventListener('submit', (e) => {
  e.preventDefault();
  const content = promptBox.value.trim();
  if (!content || state.busy || !state.ready) return;
  promptBox.value = '';
  void send(content);
});
promptBox.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    $<HTMLFormElement>('composer').requestSubmit();
  }
});
// Another model or budget: reload the page with ?model= and ?experts=, so the old engine and its GPU memory go
// away with the page.
function reloadWith() {
  const model = $<HTMLInputElement>('model-url').value.trim(), experts = $<HTMLSelectElement>('expert-budget').value, routing = $<HTMLSelectElement>('routing').value;
  location.search = `?${new URLSearchParams({ model, experts, ...(DRAFT_TOKENS ? { draft: String(DRAFT_TOKENS) } : {}), ...(routing !== '0' ? { routing } : {}) })}`;
}
$('model-form').addEventListener('submit', (e) => {
  e.preventDefault();
  reloadWith();
});
$('expert-budget').addEventListener('change', reloadWith);
$('routing').addEventListener('change', reloadWith);
stopButton.addEventListener('click', () => void engine?.interrupt());
newChatButton.addEventListener('click', async () => {
  await engine?.resetChat();
  chats.startNew();
  state.restoredTokens = 0;
  messages = [];
  $('messages').replaceChildren();
  $('stats-list').innerHTML = '<dt>No reply yet</dt>';
  $('heatmap-box').hidden = $('heatmap-off').hidden = true;
  promptBox.focus();
});

/**
 * Built sites (not the dev server, which has import.meta.hot): the service worker (demo/sw.js, emitted by
 * demo/vite.config.ts) keeps the page's files, IndexedDB the model: both make it offline-ready.
 */
async function registerServiceWorker() {
  if (import.meta.hot || !('serviceWorker' in navigator)) return;
  await navigator.serviceWorker.register('../sw.js'); // the site's root: its scope covers demo/ and assets/
  await navigator.serviceWorker.ready;
  if (!navigator.serviceWorker.controller) await new Promise((r) => navigator.serviceWorker.addEventListener('controllerchange', r, { once: true }));
  state.offlineReady = true;
  showOfflineReady();
}

function showOfflineReady() {
  $('offline-ready').hidden = !(state.offlineReady && state.ready);
}

void load();
registerServiceWorker().catch((e: Error) => console.warn(`No offline copy of the page: ${e.message}`));
