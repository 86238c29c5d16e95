import { defineConfig } from 'vite';

// The dev server serves the demo (demo/), static files (public/) and the browser test pages (test/browser/pages/)
// from the repository root: WGSL comes in through `import.meta.glob(..., { query: '?raw' })` in src/gpu/shaders.ts,
// which only Vite resolves. The browser tests start this config through Vite's JS API (test/helpers/browser.ts).
export default defineConfig({
  root: '.',
  publicDir: 'public',
  server: { host: '127.0.0.1' },
  // Module workers (the runtime and the tests run WebGPU inside dedicated workers).
  worker: { format: 'es' },
  build: { target: 'es2022' },
});
