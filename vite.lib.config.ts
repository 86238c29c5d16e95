// The library for web pages: dist/lib/qwen3-next-webgpu.js (createEngine, createWorkerEngine, types, errors) and
// dist/lib/worker.js (the Web Worker entry), ES modules with every dependency and the WGSL (src/gpu/shaders.ts's
// import.meta.glob) bundled in, so a plain HTML page can import them with no build step of its own.
import { defineConfig } from 'vite';

export default defineConfig({
  publicDir: false,
  build: {
    outDir: 'dist/lib',
    emptyOutDir: true,
    target: 'es2022',
    minify: false,
    sourcemap: true,
    lib: {
      entry: { 'qwen3-next-webgpu': 'src/index.ts', worker: 'src/worker.ts' },
      formats: ['es'],
    },
    rollupOptions: { output: { chunkFileNames: 'shared-[hash].js' } },
  },
});
