import { fileURLToPath } from 'node:url';
import { defineConfig, mergeConfig } from 'vite';
import base from '../vite.config.ts';

// `npm run build:demo`: the demo as a static site in dist/demo, the page at demo/index.html (index.html redirects there) and the embedded model
// (public/models/) at models/, so the page's relative model URL works as in the dev server. base './': every URL is
// relative, so the folder can be served from any path (a GitHub Pages project site, a sub-folder of a CDN bucket).
const root = fileURLToPath(new URL('..', import.meta.url));

export default mergeConfig(base, defineConfig({
  root,
  base: './',
  build: {
    outDir: 'dist/demo',
    emptyOutDir: true,
    rollupOptions: { input: fileURLToPath(new URL('./index.html', import.meta.url)) },
  },
  // The site's root page sends visitors on to the demo.
  plugins: [{
    name: 'demo-root-redirect',
    generateBundle() {
      this.emitFile({ type: 'asset', fileName: 'index.html', source: '<!doctype html><link rel="icon" href="data:,"><meta http-equiv="refresh" content="0; url=demo/">\n' });
    },
  }],
}));
