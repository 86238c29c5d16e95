// The demo's service worker (built sites only: demo/main.ts registers it outside the dev server). It keeps the
// app shell (the page, its JS and CSS, the engine's worker bundle) in the Cache API, so after one visit the page
// opens with the network off. Model bytes are not its business: the engine keeps them in IndexedDB
// (`cache: true`), and when the network is off its manifest request fails and it loads the stored copy.
//
// demo/vite.config.ts emits this file at the site's root (its scope must cover the worker bundle in assets/) and
// prepends two constants: SHELL, the shell's URLs relative to this file, and VERSION, a hash of their contents
// (a new build is a new worker, which replaces the old cache).
/* global SHELL, VERSION */
const CACHE = `q3n-demo-${VERSION}`;
const shell = new Set(SHELL.map((path) => new URL(path, self.location.href).href));

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll([...shell])).then(() => self.skipWaiting()));
});

// Drop older builds' caches and take over the open page at once: it is offline-ready without a reload.
self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key.startsWith('q3n-demo-') && key !== CACHE) await caches.delete(key);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const req = event.request, url = new URL(req.url);
  if (req.method !== 'GET' || url.origin !== self.location.origin) return;
  // A page: the network first (a new deployment shows up), the cached copy when offline (any ?model=).
  if (req.mode === 'navigate') {
    event.respondWith(fetch(req).catch(async () => (await caches.match(req, { ignoreSearch: true })) ?? Response.error()));
    return;
  }
  // Hashed assets never change: the cache first. Anything else (the model's files) goes to the network as usual.
  url.search = '';
  if (shell.has(url.href)) event.respondWith(caches.match(url.href).then((hit) => hit ?? fetch(req)));
});
