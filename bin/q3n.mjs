#!/usr/bin/env node
// Runs the bundled CLI; the README's set-up command builds it (npm run build:node).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const bundle = fileURLToPath(new URL('../dist/node/q3n.mjs', import.meta.url));
if (!existsSync(bundle)) {
  console.error('q3n: dist/node/q3n.mjs is missing: run the set-up command (bash scripts/setup.sh) or npm run build:node');
  process.exit(2);
}
await import(bundle);
