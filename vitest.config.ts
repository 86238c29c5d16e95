import { defineConfig } from 'vitest/config';

// One config for unit, GPU-kernel (Dawn on SwiftShader) and browser (Playwright + Chromium) tests.
// GPU tests are slow in software: run files in separate forks (processes), never in threads that share Dawn.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    // Two files at a time on CI's 2 cores: browser and GPU tests spend much of their time waiting on Chromium,
    // SwiftShader's threads or page loads, so one file at a time left a core idle (19.8 min serial).
    maxWorkers: 2,
    testTimeout: 300_000,
    hookTimeout: 300_000,
    // The summary reporter ends the output with a plain 'Tests: N passed, N failed, N skipped' line for CI.
    reporters: ['default', './scripts/vitest-summary.ts'],
  },
});
