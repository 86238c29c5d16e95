// The layering of src/ (.dependency-cruiser.cjs, docs/ARCHITECTURE.md): no import cycles, no import from a lower
// layer to a higher one, the CPU reference and the runtime independent. Run over src/, and over a planted tree
// that breaks each rule once, so a config that silently matched nothing could not pass.
import { mkdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cruise, type ICruiseResult } from 'dependency-cruiser';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import { REPO_ROOT } from '../helpers/fixtures.ts';

async function violations(baseDir: string, minModules = 1): Promise<string[]> {
  const options = await extractDepcruiseOptions(join(REPO_ROOT, '.dependency-cruiser.cjs'));
  const { output } = await cruise(['src'], { ...options, baseDir, tsConfig: undefined }, { extensions: ['.ts'] });
  const { summary } = output as ICruiseResult;
  expect(summary.totalCruised, 'modules cruised').toBeGreaterThanOrEqual(minModules);
  return summary.violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`);
}

describe('architecture', () => {
  it('src/ has no cycles and no upward imports', { timeout: 60_000 }, async () => {
    expect(await violations(REPO_ROOT, 60)).toEqual([]);
  });

  it('the rules catch a cycle, an upward import and the runtime leaning on its reference', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'arch-'));
    try {
      const file = (path: string, text: string) => {
        mkdirSync(join(dir, path, '..'), { recursive: true });
        writeFileSync(join(dir, path), text);
      };
      file('src/config.ts', 'export const c = 1;\n');
      file('src/gpu/context.ts', "import { m } from '../model/model.ts';\nexport const g = m;\n");
      file('src/model/model.ts', "import { a } from './a.ts';\nexport const m = a;\n");
      file('src/model/a.ts', "import { m } from './model.ts';\nexport const a = 1 + (m ?? 0);\n");
      file('src/kernels/k.ts', "import { r } from '../reference/ops.ts';\nexport const k = r;\n");
      file('src/reference/ops.ts', "import { c } from '../config.ts';\nexport const r = c;\n");
      const found = (await violations(dir)).map((v) => v.split(':')[0]);
      expect(new Set(found)).toEqual(new Set(['no-cycles', 'gpu-imports-up', 'runtime-imports-reference']));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
