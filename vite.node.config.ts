// Node bundles: the `q3n` CLI and the GPU benchmark. One self-contained ESM file each (WGSL inlined through
// src/gpu/shaders.ts's import.meta.glob), with only `webgpu` (Dawn's native addon) left external, so the
// benchmark can travel to the GPU machine with nothing but .gpu/ beside it.
import { defineConfig } from 'vite';
import { builtinModules } from 'node:module';

export default defineConfig({
  publicDir: false, // public/ holds the demo's model files, not part of a Node bundle
  build: {
    ssr: true,
    outDir: 'dist/node',
    emptyOutDir: false,
    target: 'node20',
    minify: false,
    sourcemap: true,
    rollupOptions: {
      input: { q3n: 'src/cli/bin.ts', 'pack-worker': 'src/quant/pack-worker.ts' },
      external: ['webgpu', ...builtinModules, ...builtinModules.map((m) => `node:${m}`)],
      output: { format: 'es', entryFileNames: '[name].mjs' },
    },
  },
  ssr: { noExternal: true, target: 'node' },
});
