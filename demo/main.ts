// The chat demo: loads the packed model in a Web Worker (the library's worker entry, src/worker.ts), streams replies
// into the message list, and shows what the engine reports (load progress, usage, expert cache). No WebGPU: an
// explanation panel instead of the chat. `window.demo` exposes the engine state to test/browser/demo.test.ts.
import { createWorkerEngine, type ChatCompletionChunk, type ChatMessage, type CompletionUsage, type Engine, type FinishReason } from '../src/index.ts';
import { renderMarkdown } from './markdown.ts';

// Relative to this page: the dev server and the static build (dist/demo) both serve public/models/ at /models/.
const MODEL_URL = new URLSearchParams(location.search).get('model') ?? '../models/brown-tiny-q4/';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const promptBox = $<HTMLTextAreaElement>('prompt');
const sendButton = $<HTMLButtonElement>('send');
const stopButton = $<HTMLButtonElement>('stop');
const newChatButton = $<HTMLButtonElement>('new-chat');

const state = { ready: false, busy: false, replies: 0, lastFinish: null as FinishReason | null, lastUsage: null as CompletionUsage | null };
declare global {
  interface Window {
    demo: typeof state;
  }
}
window.demo = state;

let engine: Engine;
let messages: ChatMessage[] = [];

function showNoWebGPU(detail: string) {
  $('app').hidden = true;
  $('no-webgpu').hidden = false;
  $('no-webgpu-detail').textContent = detail;
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

async function load() {
  $<HTMLInputElement>('model-url').value = MODEL_URL;
  if (!('gpu' in navigator)) return showNoWebGPU('navigator.gpu is missing: WebGPU is off or unsupported in this browser.');
  const worker = new Worker(new URL('../src/worker.ts', import.meta.url), { type: 'module' });
  try {
    engine = await createWorkerEngine(worker, {
      model: MODEL_URL,
      onProgress: (p) => {
        $('load-text').textContent = p.text;
        $('load-bytes').textContent = p.total ? `${mib(p.loaded)} / ${mib(p.total)}` : '';
        $<HTMLProgressElement>('load-bar').value = p.total ? p.loaded / p.total : 0;
      },
    });
  } catch (e) {
    worker.terminate();
    const err = e as Error;
    if (err.name === 'WebGPUNotAvailableError') return showNoWebGPU(err.message);
    $('load-text').textContent = `Could not load the model: ${err.name}: ${err.message}`;
    $('load').classList.add('error');
    throw e;
  }
  $('load').classList.add('done');
  $('load-text').textContent = 'Model loaded: ready to chat.';
  $<HTMLProgressElement>('load-bar').value = 1;
  state.ready = true;
  setBusy(false);
  promptBox.focus();
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
    const chunks = await engine.chat.completions.create({
      messages,
      stream: true,
      temperature: number('temperature'),
      top_p: number('top-p'),
      max_tokens: number('max-tokens'),
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
}

function showStats(u: CompletionUsage, finish: FinishReason | null) {
  const rows: [string, string][] = [
    ['Finish', finish ? `${finish} (${FINISH_TEXT[finish]})` : '?'],
    ['Prompt tokens', `${u.prompt_tokens}${u.cached_prompt_tokens ? ` (${u.cached_prompt_tokens} reused)` : ''}`],
    ['Reply tokens', String(u.completion_tokens)],
    ['Prefill speed', `${u.prefill_tokens_per_s.toFixed(1)} tok/s`],
    ['Decode speed', u.completion_tokens > 1 ? `${u.decode_tokens_per_s.toFixed(1)} tok/s` : '—'],
  ];
  const hitRate = (u.expert_cache as { totals?: { hitRate?: number } } | undefined)?.totals?.hitRate;
  if (hitRate !== undefined) rows.push(['Expert cache hits', `${(hitRate * 100).toFixed(1)} %`]);
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
// Another model: reload the page with ?model=, so the old engine and its GPU memory go away with the page.
$('model-form').addEventListener('submit', (e) => {
  e.preventDefault();
  location.search = `?model=${encodeURIComponent($<HTMLInputElement>('model-url').value.trim())}`;
});
stopButton.addEventListener('click', () => void engine.interrupt());
newChatButton.addEventListener('click', async () => {
  await engine.resetChat();
  messages = [];
  $('messages').replaceChildren();
  $('stats-list').innerHTML = '<dt>No reply yet</dt>';
  promptBox.focus();
});

void load();
