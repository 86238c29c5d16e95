// Every GPU test gets its device here. WebGPU validation errors do not throw: they go to error scopes and
// `uncapturederror`. `gpuTest` wraps a test body in validation + out-of-memory + internal scopes and also fails
// on any uncaptured error, so a kernel that silently does nothing cannot pass.
import { afterAll } from 'vitest';
import { requestNodeDevice } from '../../src/gpu/node-device.ts';
import { STORAGE, type GpuContext } from '../../src/gpu/context.ts';
import { OFFSET_ALIGN, weightBytes, type GpuWeight } from '../../src/gpu/packed-weight.ts';
import { packWeight, type WeightFormat } from '../../src/quant/formats.ts';

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

/** Pack W (N, K) row-major f32 into `format` and upload it as its own buffer. */
export function uploadWeight(ctx: GpuContext, w: Float32Array, N: number, K: number, format: WeightFormat, label: string): GpuWeight {
  return { buffer: ctx.upload(packWeight(w, N, K, format), label), offset: 0, format, N, K };
}

export interface WeightPart {
  w: Float32Array;
  N: number;
  K: number;
  format: WeightFormat;
}

/** Pack several weights into one buffer, each at an OFFSET_ALIGN-aligned offset (stacked experts). */
export function uploadWeights(ctx: GpuContext, parts: WeightPart[], label: string): GpuWeight[] {
  const offsets: number[] = [];
  let end = 0;
  for (const p of parts) {
    offsets.push(end);
    end = Math.ceil((end + weightBytes(p.format, p.N, p.K)) / OFFSET_ALIGN) * OFFSET_ALIGN;
  }
  const all = new Uint32Array(end / 4);
  parts.forEach((p, i) => all.set(packWeight(p.w, p.N, p.K, p.format), offsets[i] / 4));
  const buffer = ctx.upload(all, label);
  return parts.map((p, i) => ({ buffer, offset: offsets[i], format: p.format, N: p.N, K: p.K }));
}
