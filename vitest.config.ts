import { defineConfig } from 'vitest/config';

// One config for unit, GPU-kernel (Dawn on SwiftShader) and browser (Playwright + Chromium) tests.
// GPU tests are slow in software: run files in separate forks, never in parallel threads that share Dawn.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 300_000,
    hookTimeout: 300_000,
    // The summary reporter ends the output with a plain 'Tests: N passed, N failed, N skipped' line for CI.
    reporters: ['default', './scripts/vitest-summary.ts'],
  },
});
