#!/usr/bin/env node
// Mutation check of the CPU reference: each known Qwen3-Next pitfall (REFERENCE.md §8) is put into a COPY of
// src/ one at a time, and the tiny-preset fixture tests (test/unit/reference.test.ts -t "reference tiny")
// must then FAIL. A mutation that survives means the tests cannot see that bug. The repository is never
// modified: src/ and test/ are copied to a temp dir (fixtures and node_modules symlinked).
// Usage: node scripts/mutation-check.mjs        exit 0 iff the baseline passes and every mutation is killed.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TEST = 'test/unit/reference.test.ts';
const FILTER = 'reference tiny';

// [name, file, exact source text (must occur once), replacement]
const MUTATIONS = [
  ['zero-centred RMSNorm uses w, not 1+w', 'src/reference/ops.ts',
    'y[r * D + i] = x[r * D + i] * inv * (1 + w[i]);',
    'y[r * D + i] = x[r * D + i] * inv * w[i];'],
  ['delta error against the undecayed state', 'src/reference/ops.ts',
    `      for (let i = 0; i < dk * dv; i++) S[s0 + i] *= alpha; // decay first
      e.fill(0);
      for (let a = 0; a < dk; a++) for (let b = 0; b < dv; b++) e[b] += S[s0 + a * dv + b] * k[qk0 + a]; // S'ᵀk`,
    `      e.fill(0);
      for (let a = 0; a < dk; a++) for (let b = 0; b < dv; b++) e[b] += S[s0 + a * dv + b] * k[qk0 + a];
      for (let i = 0; i < dk * dv; i++) S[s0 + i] *= alpha;`],
  ['chunked GDN: W without exp(γ) (chunk-start state undecayed)', 'src/reference/ops.ts',
    'W[i * dk + a] = B_(i) * Math.exp(gam[i]) * K_(i, a);',
    'W[i * dk + a] = B_(i) * K_(i, a);'],
  ['GDN key heads tiled (h % Hk), not repeat_interleave', 'src/reference/model.ts',
    'const kh = Math.floor(h / r);',
    'const kh = h % c.linearNumKeyHeads;'],
  ['RoPE GPT-J pairing (2i, 2i+1)', 'src/reference/ops.ts',
    `        const a = x[base + i], b = x[base + i + half];
        x[base + i] = a * c - b * s;
        x[base + i + half] = b * c + a * s;`,
    `        const a = x[base + 2 * i], b = x[base + 2 * i + 1];
        x[base + 2 * i] = a * c - b * s;
        x[base + 2 * i + 1] = b * c + a * s;`],
  ['router: no top-k renormalisation', 'src/reference/model.ts',
    'routeTopK(logits, T, E, k, c.normTopkProb)',
    'routeTopK(logits, T, E, k, false)'],
  ['shared expert gate without sigmoid', 'src/reference/model.ts',
    'const gt = sigmoid(sg[t]);',
    'const gt = sg[t];'],
  ['conv taps reversed (w[K-1] on the oldest token)', 'src/reference/ops.ts',
    's += w[c * K + j] * at(c, t - (K - 1) + j);',
    's += w[c * K + (K - 1 - j)] * at(c, t - (K - 1) + j);'],
  ['q_proj read as all queries, then all gates', 'src/reference/model.ts',
    `      q.set(qg.subarray(i * 2 * D, i * 2 * D + D), i * D);
      gate.set(qg.subarray(i * 2 * D + D, (i + 1) * 2 * D), i * D);`,
    `      const t = Math.floor(i / Hq), h = i % Hq;
      q.set(qg.subarray(t * 2 * Hq * D + h * D, t * 2 * Hq * D + h * D + D), i * D);
      gate.set(qg.subarray(t * 2 * Hq * D + Hq * D + h * D, t * 2 * Hq * D + Hq * D + h * D + D), i * D);`],
  ['GDN in_proj_qkvz: z read where v is', 'src/reference/model.ts',
    'm.set(row.subarray(2 * dk, 2 * dk + r * dv), 2 * keyDim + g * r * dv);',
    'm.set(row.subarray(2 * dk + r * dv, group), 2 * keyDim + g * r * dv);'],
  ['gated RMSNorm uses 1+w', 'src/reference/ops.ts',
    'y[r * D + i] = w[i] * (o[r * D + i] * inv) * silu(z[r * D + i]);',
    'y[r * D + i] = (1 + w[i]) * (o[r * D + i] * inv) * silu(z[r * D + i]);'],
];

function makeSandbox() {
  const dir = mkdtempSync(join(tmpdir(), 'qwen3next-mutation-'));
  cpSync(join(ROOT, 'src'), join(dir, 'src'), { recursive: true });
  cpSync(join(ROOT, 'test'), join(dir, 'test'), { recursive: true, filter: (p) => p !== join(ROOT, 'test/fixtures') });
  symlinkSync(join(ROOT, 'test/fixtures'), join(dir, 'test/fixtures'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  for (const f of ['package.json', 'tsconfig.json', 'vitest.config.ts']) cpSync(join(ROOT, f), join(dir, f));
  return dir;
}

/** Runs the tiny reference tests in the sandbox; returns { passed, failed, firstFailure } or { error }. */
function runTests(dir) {
  const out = join(dir, 'result.json');
  rmSync(out, { force: true });
  const r = spawnSync(process.execPath, [join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', TEST, '-t', FILTER, '--reporter=json', `--outputFile=${out}`],
    { cwd: dir, encoding: 'utf8', timeout: 300_000 });
  if (!existsSync(out)) return { error: `no result (exit ${r.status}): ${(r.stderr || r.stdout).slice(-400)}` };
  const res = JSON.parse(readFileSync(out, 'utf8'));
  const failures = res.testResults.flatMap((f) => f.assertionResults).filter((a) => a.status === 'failed');
  if (res.numTotalTests === 0 || res.numPassedTests + res.numFailedTests === 0) return { error: 'no tests ran' };
  return { passed: res.numPassedTests, failed: res.numFailedTests, firstFailure: failures[0]?.title ?? '' };
}

const dir = makeSandbox();
let survivors = 0;
try {
  const pristine = new Map();
  for (const [, file] of MUTATIONS) pristine.set(file, readFileSync(join(dir, file), 'utf8'));

  const base = runTests(dir);
  if (base.error || base.failed > 0) {
    throw new Error(`baseline does not pass, nothing to check: ${base.error ?? `${base.failed} failed (${base.firstFailure})`}`);
  }
  console.log(`baseline: ${base.passed} tiny tests pass\n`);

  const rows = [['mutation', 'result', 'failed/total', 'first failing test']];
  for (const [name, file, from, to] of MUTATIONS) {
    const src = pristine.get(file);
    const hits = src.split(from).length - 1;
    if (hits !== 1) {
      rows.push([name, 'NOT APPLIED', '-', `pattern found ${hits}x in ${file}: update this script`]);
      survivors++;
      continue;
    }
    writeFileSync(join(dir, file), src.replace(from, to));
    const r = runTests(dir);
    writeFileSync(join(dir, file), src);
    if (r.error) {
      rows.push([name, 'ERROR', '-', r.error.replace(/\s+/g, ' ').slice(0, 120)]);
      survivors++;
    } else {
      if (r.failed === 0) survivors++;
      rows.push([name, r.failed > 0 ? 'killed' : 'SURVIVED', `${r.failed}/${r.failed + r.passed}`, r.firstFailure]);
    }
    console.log(`  ${rows.at(-1)[1].padEnd(8)} ${name}`);
  }

  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  const line = (r) => `| ${r.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`;
  console.log(`\n${line(rows[0])}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|\n${rows.slice(1).map(line).join('\n')}`);
  console.log(survivors === 0 ? '\nall mutations killed' : `\n${survivors} mutation(s) not killed`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(survivors === 0 ? 0 : 1);
