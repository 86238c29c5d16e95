// Bundles test/device/run.ts (all test/gpu/*.test.ts with a vitest shim) into one Node script whose only
// external is Dawn ('webgpu'), to run our kernel and fixture tests on the GPU machine.
import { defineConfig, mergeConfig } from 'vite';
import base from './vite.node.config.ts';
import { fileURLToPath } from 'node:url';

export default mergeConfig(base, defineConfig({
  resolve: { alias: { vitest: fileURLToPath(new URL('./test/device/vitest-shim.ts', import.meta.url)) } },
  build: {
    outDir: 'dist/device-tests',
    rollupOptions: { input: { run: 'test/device/run.ts' } },
  },
}));
