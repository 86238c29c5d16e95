import { defineConfig } from 'vitest/config';

// Measurements on this machine that are not tests (bench/*.measure.ts): run one with
// `npx vitest run --config vitest.measure.config.ts bench/<name>.measure.ts`; they print markdown tables.
export default defineConfig({
  test: { include: ['bench/**/*.measure.ts'], pool: 'forks', maxWorkers: 1, testTimeout: 1_800_000, hookTimeout: 300_000 },
});
