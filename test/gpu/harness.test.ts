// The GPU test harness itself must be able to fail: a validation error inside withGpuErrors rejects.
import { describe, expect, it } from 'vitest';
import { withGpuErrors } from '../helpers/gpu.ts';

describe('GPU test harness', () => {
  it('turns a WebGPU validation error into a test failure', async () => {
    await expect(
      withGpuErrors(async (device) => {
        device.createBuffer({ size: 4, usage: 0x1 | 0x80 }); // MAP_READ | STORAGE is invalid
      }),
    ).rejects.toThrow(/GPU errors/);
  });
  it('passes a clean body', () => withGpuErrors(async (device) => void device.createBuffer({ size: 4, usage: 0x80 })));
});
