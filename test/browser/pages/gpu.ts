// Browser side of the browser tests (pages and workers alike): a WebGPU device that reports every error.
// Uncaptured errors and a lost device go to console.error, which the Node harness (test/helpers/browser.ts)
// collects and turns into a test failure; errors inside `scoped` are returned to the caller as well.

export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  features: string[];
}

export async function browserDevice(): Promise<{ device: GPUDevice; adapter: AdapterReport }> {
  if (!('gpu' in navigator)) throw new Error(`navigator.gpu is missing (secure context: ${isSecureContext}): WebGPU is disabled in this browser`);
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error('navigator.gpu.requestAdapter() returned null: no WebGPU adapter');
  // Default limits on purpose: kernels must fit the portable WebGPU limits.
  const device = await adapter.requestDevice();
  device.addEventListener('uncapturederror', (e) => console.error(`[webgpu uncaptured] ${(e as GPUUncapturedErrorEvent).error.message}`));
  device.lost.then((info) => {
    if (info.reason !== 'destroyed') console.error(`[webgpu device lost] ${info.message}`);
  });
  const { vendor, architecture, device: name, description } = adapter.info;
  const isFallbackAdapter = (adapter.info as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false;
  return { device, adapter: { vendor, architecture, device: name, description, isFallbackAdapter, features: [...adapter.features].sort() } };
}

/** Run `body` inside validation, out-of-memory and internal error scopes; any error raised comes back in gpuErrors. */
export async function scoped<T>(device: GPUDevice, body: () => Promise<T>): Promise<{ result: T; gpuErrors: string[] }> {
  device.pushErrorScope('internal');
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  const result = await body();
  const errors = [await device.popErrorScope(), await device.popErrorScope(), await device.popErrorScope()];
  await device.queue.onSubmittedWorkDone();
  return { result, gpuErrors: errors.filter((e): e is GPUError => e !== null).map((e) => `${e.constructor.name}: ${e.message}`) };
}

/** An invalid buffer usage outside any error scope: the harness must see it as an uncaptured error. */
export async function provokeGpuError(device: GPUDevice): Promise<null> {
  device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE });
  await device.queue.onSubmittedWorkDone();
  return null;
}
