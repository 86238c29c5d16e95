// The pure parts of issue #8's fault handling: the quota message (src/store/browser.ts formatBytes, quotaError)
// and PackedStore's repair hook (verifyReads + damaged, which IdbModelStore uses to fetch a damaged record again),
// on brown-tiny-q4's packed folder with one record's bytes flipped in memory.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelLoadError, QuotaExceededError } from '../../src/errors.ts';
import { formatBytes, quotaError } from '../../src/store/browser.ts';
import { parseManifest, type Manifest, type RecordEntry } from '../../src/store/manifest.ts';
import { PackedStore } from '../../src/store/store.ts';
import { REPO_ROOT } from '../helpers/fixtures.ts';

const DIR = join(REPO_ROOT, 'public/models/brown-tiny-q4');

describe('quota message', () => {
  it('gives sizes in a unit people read, with the exact byte count', () => {
    expect(formatBytes(0)).toBe('0 bytes');
    expect(formatBytes(999)).toBe('999 bytes');
    expect(formatBytes(5000)).toBe('5.0 kB (5,000 bytes)');
    expect(formatBytes(12_907_032)).toBe('12.9 MB (12,907,032 bytes)');
    expect(formatBytes(45_123_456_789)).toBe('45.1 GB (45,123,456,789 bytes)');
    expect(formatBytes(-1)).toBe('0 bytes'); // usage above quota: nothing available
  });

  it('says what is needed, what is available, and what to do', () => {
    const e = quotaError(12_907_032, 5000);
    expect(e).toBeInstanceOf(QuotaExceededError);
    expect(e).toMatchObject({ name: 'QuotaExceededError', neededBytes: 12_907_032, availableBytes: 5000 });
    expect(e.message).toBe(
      "the model needs 12.9 MB (12,907,032 bytes) more browser storage, but only 5.0 kB (5,000 bytes) are available to this site. Free some space (delete other models, or clear other sites' data in the browser settings) and try again.",
    );
  });
});

/** brown-tiny-q4 from its folder, with `damage` applied to the bytes read; with `repairs`, damaged() logs why and returns the true bytes. */
class TestStore extends PackedStore {
  readonly repaired: string[] = [];
  constructor(m: Manifest, private readonly damage: (file: string, offset: number, b: Uint8Array<ArrayBuffer>) => Uint8Array<ArrayBuffer>, private readonly repairs: boolean, verifyReads: boolean) {
    super(m);
    this.verifyReads = verifyReads;
  }
  private read(file: string, offset: number, length: number): Uint8Array<ArrayBuffer> {
    return new Uint8Array(readFileSync(join(DIR, file)).subarray(offset, offset + length));
  }
  protected async readRange(file: string, offset: number, length: number) {
    return this.damage(file, offset, this.read(file, offset, length));
  }
  protected override async damaged(r: RecordEntry, what: string, why: string) {
    if (!this.repairs) return super.damaged(r, what, why);
    this.repaired.push(`${what} ${why}`);
    return this.read(r.file, r.offset, r.bytes);
  }
  async close() {}
}

describe('PackedStore repair hook', () => {
  const m = parseManifest(readFileSync(join(DIR, 'manifest.json'), 'utf8'));
  const target = m.dense.find((d) => d.name === 'L3.qkv_proj')!, expert = m.experts[2][7];
  const flip = (file: string, offset: number, b: Uint8Array<ArrayBuffer>) => {
    if ((file === target.file && offset === target.offset) || (file === expert.file && offset === expert.offset)) b[b.length >> 1] ^= 0x01;
    return b;
  };
  const truth = (r: RecordEntry) => new Uint32Array(new Uint8Array(readFileSync(join(DIR, r.file)).subarray(r.offset, r.offset + r.bytes)).buffer);

  it('with verifyReads, hands every damaged record to damaged() and returns what it gives', async () => {
    const store = new TestStore(m, flip, true, true);
    expect(await store.readDense('L3.qkv_proj')).toEqual(truth(target)); // no `verify` asked: verifyReads checks anyway
    expect(await store.readExpert(2, 7)).toEqual(truth(expert));
    await store.readDense('L3.o_proj');
    await store.readExpert(2, 6);
    expect(store.repaired).toEqual([
      `L3.qkv_proj (bytes ${target.offset}..${target.offset + target.bytes}) fails its SHA-256 check`,
      `L2.E7 (bytes ${expert.offset}..${expert.offset + expert.bytes}) fails its SHA-256 check`,
    ]);
  });

  it('hands a truncated record to damaged() too', async () => {
    const store = new TestStore(m, (f, o, b) => (f === target.file && o === target.offset ? b.slice(0, 100) : b), true, false);
    expect(await store.readDense('L3.qkv_proj')).toEqual(truth(target));
    expect(store.repaired).toEqual([`L3.qkv_proj is truncated (read 100 of ${target.bytes} bytes)`]);
  });

  it('without verifyReads checks only when asked; the default damaged() throws ModelLoadError naming the record', async () => {
    const store = new TestStore(m, flip, false, false);
    expect(await store.readDense('L3.qkv_proj')).not.toEqual(truth(target)); // unchecked: the damage passes through
    const err = await store.readDense('L3.qkv_proj', true).catch((e) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect(err).toMatchObject({ file: target.file, tensor: 'L3.qkv_proj' });
    expect(err.message).toMatch(/^dense-000\.bin: L3\.qkv_proj \(bytes \d+\.\.\d+\) fails its SHA-256 check\. The packed model is damaged: convert or download it again\.$/);
  });
});
