import { packInline, packRows } from '../../src/quant/packer.ts';
import { describe, expect, it } from 'vitest';
import { packWeight, unpackWeight, f32ToF16Bits, f16BitsToF32, type WeightFormat } from '../../src/quant/formats.ts';
import { randn } from '../helpers/random.ts';

describe('weight formats', () => {
  it('f16 conversion rounds to nearest even and keeps specials', () => {
    for (const v of [0, -0, 1, -2.5, 65504, 1e-7, 6.1e-5, 3.14159, 1e6, -1e-9]) {
      const h = f16BitsToF32(f32ToF16Bits(v));
      if (Math.abs(v) > 65520) expect(h).toBe(v > 0 ? Infinity : -Infinity);
      else expect(Math.abs(h - v)).toBeLessThanOrEqual(Math.max(Math.abs(v) * 2 ** -11, 2 ** -25));
    }
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN)))).toBe(true);
  });

  const cases: [WeightFormat, number][] = [['f32', 0], ['f16', 1e-3], ['q8', 0.006], ['q4', 0.1]];
  for (const [format, tol] of cases) {
    it(`${format} round trip within ${tol} of the row range, odd K`, () => {
      const N = 5, K = 77, w = randn(N * K, 3);
      const back = unpackWeight(packWeight(w, N, K, format), N, K, format);
      let worst = 0;
      for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(back[i] - w[i]));
      expect(worst).toBeLessThanOrEqual(tol * 6); // values span about ±3
      if (format === 'f32') expect(worst).toBe(0);
    });
  }
});

describe('packRows (row blocks packed separately, for a thread pool)', () => {
  it('is bit-identical to packWeight on the whole matrix, for q4 and q8, with a ragged last block', async () => {
    const N = 37, K = 70, w = Float32Array.from({ length: N * K }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 11)));
    for (const format of ['q4', 'q8'] as const) {
      const whole = packWeight(w, N, K, format);
      for (const rows of [1, 8, 36]) expect(await packRows(packInline, w, N, K, format, rows), `${format}, ${rows} rows a block`).toEqual(whole);
    }
  });
});
