// Every GPU-kernel and fixture test in one bundle, for the GPU machine: `npm run device-tests:build`, then on the
// device `source .gpu/setup.sh; node dist/device-tests/run.mjs`. Same test files as CI; vitest replaced by the shim.
import { runAll } from './vitest-shim.ts';

process.env.Q3N_REPO_ROOT ??= process.cwd();
const files = import.meta.glob('../gpu/*.test.ts');

const only = process.argv.slice(2);
for (const [path, load] of Object.entries(files).sort()) {
  if (only.length && !only.some((o) => path.includes(o))) continue;
  await load();
}
const start = performance.now();
const t = await runAll();
console.log(`\n${t.passed} passed, ${t.failed} failed, ${t.skipped} skipped (${((performance.now() - start) / 1000).toFixed(1)} s)`);
process.exit(t.failed ? 1 : 0);
