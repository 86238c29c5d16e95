// Every GPU test gets its device here. WebGPU validation errors do not throw: they go to error scopes and
// `uncapturederror`. `gpuTest` wraps a test body in validation + out-of-memory + internal scopes and also fails
// on any uncaptured error, so a kernel that silently does nothing cannot pass.
import { afterAll } from 'vitest';
import { requestNodeDevice } from '../../src/gpu/node-device.ts';
import { STORAGE } from '../../src/gpu/context.ts';

let devicePromise: Promise<GPUDevice> | undefined;
const uncaptured: string[] = [];

export function getTestDevice(): Promise<GPUDevice> {
  devicePromise ??= requestNodeDevice().then((d) => {
    d.addEventListener('uncapturederror', (ev) => uncaptured.push((ev as GPUUncapturedErrorEvent).error.message));
    return d;
  });
  return devicePromise;
}

/** Run `body` with the test device inside error scopes; throw if any GPU error was raised. */
export async function withGpuErrors<T>(body: (device: GPUDevice) => Promise<T>): Promise<T> {
  const device = await getTestDevice();
  uncaptured.length = 0;
  device.pushErrorScope('internal');
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  let result: T;
  try {
    result = await body(device);
  } finally {
    const errors = [await device.popErrorScope(), await device.popErrorScope(), await device.popErrorScope()].filter((e): e is GPUError => e !== null);
    await device.queue.onSubmittedWorkDone();
    const all = [...errors.map((e) => `${e.constructor.name}: ${e.message}`), ...uncaptured.map((m) => `uncaptured: ${m}`)];
    uncaptured.length = 0;
    if (all.length) throw new Error(`GPU errors during the test:\n${all.join('\n')}`);
  }
  return result;
}

afterAll(async () => {
  if (devicePromise) (await devicePromise).destroy();
});

/** A buffer filled with NaN so a kernel that skips an element is caught. */
export function poisoned(device: GPUDevice, byteLength: number, usage = STORAGE): GPUBuffer {
  const buf = device.createBuffer({ size: Math.max(4, Math.ceil(byteLength / 4) * 4), usage, mappedAtCreation: true });
  new Uint32Array(buf.getMappedRange()).fill(0x7fc00000);
  buf.unmap();
  return buf;
}
