// The fixture tests must catch every single-point change to the reference math: scripts/mutation-check.mjs
// applies ten (norm 1+w, decay order, GQA tiling, RoPE pairing, routing, shared gate, conv taps, q/gate
// packing, gated norm) to a copy of the tree and exits non-zero if any mutation survives.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/fixtures.ts';

describe('mutation check of the reference forward pass', () => {
  it('every mutation fails the tiny fixture tests', { timeout: 600_000 }, () => {
    const r = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts/mutation-check.mjs')], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(r.stdout, r.stderr).toMatch(/all mutations killed/);
    expect(r.status).toBe(0);
  });
});
