import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig, mergeConfig, type Plugin } from 'vite';
import base from '../vite.config.ts';

// `npm run build:demo`: the demo as a static site in dist/demo, the page at demo/index.html (index.html redirects there) and the embedded model
// (public/models/) at models/, so the page's relative model URL works as in the dev server. base './': every URL is
// relative, so the folder can be served from any path (a GitHub Pages project site, a sub-folder of a CDN bucket).
const root = fileURLToPath(new URL('..', import.meta.url));

/** The site's root page sends visitors on to the demo. */
const rootRedirect: Plugin = {
  name: 'demo-root-redirect',
  generateBundle() {
    this.emitFile({ type: 'asset', fileName: 'index.html', source: '<!doctype html><link rel="icon" href="data:,"><meta http-equiv="refresh" content="0; url=demo/">\n' });
  },
};

/**
 * demo/sw.js as the site's sw.js, at its root: Chrome picks a dedicated worker's service worker by the worker
 * script's URL (assets/worker-*.js), so the scope must cover assets/ as well as demo/. It gets the app shell to
 * cache: both pages and every built JS/CSS file (the engine's worker bundle included) as URLs relative to it, and
 * a hash of their contents as its version.
 */
const serviceWorker: Plugin = {
  name: 'demo-service-worker',
  enforce: 'post',
  generateBundle(_, bundle) {
    const files = Object.values(bundle).filter((f) => /^(index\.html|demo\/index\.html|assets\/.*\.(js|css))$/.test(f.fileName));
    const hash = createHash('sha256');
    for (const f of files) hash.update(f.fileName).update(f.type === 'chunk' ? f.code : f.source);
    const shell = files.map((f) => f.fileName.replace(/index\.html$/, '') || './');
    const source = `const SHELL = ${JSON.stringify(shell)};\nconst VERSION = '${hash.digest('hex').slice(0, 16)}';\n\n` + readFileSync(new URL('./sw.js', import.meta.url), 'utf8');
    this.emitFile({ type: 'asset', fileName: 'sw.js', source });
  },
};

export default mergeConfig(base, defineConfig({
  root,
  base: './',
  build: {
    outDir: 'dist/demo',
    emptyOutDir: true,
    rollupOptions: { input: fileURLToPath(new URL('./index.html', import.meta.url)) },
  },
  plugins: [rootRedirect, serviceWorker],
}));
