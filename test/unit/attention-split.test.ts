// How attention decode splits the keys over workgroups (src/kernels/attention.ts decodeSplitLen): enough workgroups
// at short contexts, splits no longer than 256 keys at long ones (a warp walks its split one dependent step after
// another), and a split length that stops changing past 32K keys, so the replayed decode list is not rebuilt.
import { describe, expect, it } from 'vitest';
import { decodeSplitLen } from '../../src/kernels/attention.ts';

describe('decodeSplitLen', () => {
  it('covers every key in splits of a multiple of 4, 32..256 keys, and about 256 workgroups or more once there are keys for them (rounding to 4 keys may drop a few)', () => {
    for (const Hkv of [1, 2, 4]) {
      for (const Tk of [1, 31, 32, 33, 4096, 8191, 32768, 32769, 131072, 262144, 1_000_000]) {
        const len = decodeSplitLen(Tk, { Hkv }), splits = Math.ceil(Tk / len);
        expect(len % 4, `Tk ${Tk}`).toBe(0);
        expect(len, `Tk ${Tk}`).toBeGreaterThanOrEqual(32);
        expect(len, `Tk ${Tk}`).toBeLessThanOrEqual(256);
        if (Tk >= 32 * 256) expect(Hkv * splits, `Tk ${Tk}, Hkv ${Hkv}`).toBeGreaterThanOrEqual(240);
      }
    }
  });
  it('the 80B shape (2 kv heads): 32 keys a split at 4K, 256 from 32K on, unchanged as the context grows', () => {
    expect(decodeSplitLen(4096, { Hkv: 2 })).toBe(32);
    for (const Tk of [32768, 40000, 131073, 262144, 1_000_000]) expect(decodeSplitLen(Tk, { Hkv: 2 }), `Tk ${Tk}`).toBe(256);
  });
});
