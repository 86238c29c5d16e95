// The Hugging Face fixtures (../shared/fixtures, made by make_fixtures.py with transformers 5.17):
// `tiny`, `asym` and `yarn` (YaRN rope scaling, prompts past its original context) are copied into test/fixtures so a fresh clone has them; `stress` and `small` are read
// from ../shared when it is there (CI has it) and reported as skipped when not.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Checkpoint } from '../../src/checkpoint/checkpoint.ts';
import { nodeFileSet, NodeFileSource } from '../../src/checkpoint/node-files.ts';
import { readSafetensorsHeader, toFloat32 } from '../../src/checkpoint/safetensors.ts';

// Q3N_REPO_ROOT: set by the bundled device test runner, whose module URL is not inside test/.
export const REPO_ROOT = process.env.Q3N_REPO_ROOT ?? resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const SHARED = resolve(REPO_ROOT, '../shared');

export type PresetName = 'tiny' | 'asym' | 'yarn' | 'stress' | 'small';

export interface FixtureCase {
  name: string;
  file: string;
  kind: 'prefill' | 'taps' | 'decode';
  seq_len?: number;
  input_ids?: number[];
  prompt_len?: number;
  steps?: number;
  prompt_ids?: number[];
  next_ids?: number[];
  tapped_layers?: number[];
  tensors: Record<string, { shape: number[]; dtype: string; desc: string }>;
}

export interface Manifest {
  cases: FixtureCase[];
  tolerances: { fp32_runtime: Record<string, unknown> };
  runtime_config: Record<string, unknown>;
}

export interface Tensor {
  shape: number[];
  data: Float32Array | Int32Array;
}

export class Preset {
  readonly manifest: Manifest;
  constructor(readonly name: PresetName, readonly dir: string) {
    this.manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  }
  openCheckpoint(): Promise<Checkpoint> {
    return Checkpoint.open(nodeFileSet(this.dir));
  }
  case(name: string): FixtureCase {
    const c = this.manifest.cases.find((c) => c.name === name);
    if (!c) throw new Error(`${this.name}: no fixture case ${name}`);
    return c;
  }
  cases(kind: FixtureCase['kind']): FixtureCase[] {
    return this.manifest.cases.filter((c) => c.kind === kind);
  }
  /** Every tensor of one fixture file. */
  async load(c: FixtureCase): Promise<Map<string, Tensor>> {
    return readTensorFile(join(this.dir, c.file));
  }
}

export async function readTensorFile(path: string): Promise<Map<string, Tensor>> {
  const src = new NodeFileSource(path);
  const header = await readSafetensorsHeader(src);
  const out = new Map<string, Tensor>();
  for (const t of header.tensors.values()) {
    const bytes = await src.read(t.offset, t.byteLength);
    const data = t.dtype === 'I32' ? new Int32Array(bytes.slice().buffer) : toFloat32(t.dtype, bytes);
    out.set(t.name, { shape: t.shape, data });
  }
  return out;
}

/** Where each preset lives; `null` with a reason when absent. */
export function locatePreset(name: PresetName): Preset | null {
  const local = join(REPO_ROOT, 'test/fixtures', name);
  if (existsSync(join(local, 'manifest.json'))) return new Preset(name, local);
  const shared = join(SHARED, 'fixtures', name);
  if (existsSync(join(shared, 'manifest.json'))) return new Preset(name, shared);
  console.warn(`[fixtures] preset "${name}" not found in test/fixtures or ../shared/fixtures: its tests are skipped`);
  return null;
}

export const ALL_PRESETS: PresetName[] = ['tiny', 'asym', 'yarn', 'stress', 'small'];

/** Brown-tiny, the small trained model (bf16 checkpoint in ../shared only: too big to commit). */
export const BROWN_TINY_DIR = join(SHARED, 'models/brown-tiny');
export function brownTinyAvailable(): boolean {
  const ok = existsSync(join(BROWN_TINY_DIR, 'config.json'));
  if (!ok) console.warn(`[fixtures] ${BROWN_TINY_DIR} is absent: brown-tiny tests are skipped`);
  return ok;
}
