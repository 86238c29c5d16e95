// dist/bench/bench.mjs: the kernel benchmark as one Node script (only 'webgpu' external), for the GPU machine.
import { defineConfig, mergeConfig } from 'vite';
import base from './vite.node.config.ts';

export default mergeConfig(base, defineConfig({
  build: { outDir: 'dist/bench', rollupOptions: { input: { bench: 'bench/main.ts', 'make-fullsize-layer': 'scripts/make-fullsize-layer.ts' } } },
}));
