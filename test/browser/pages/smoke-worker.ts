// The smoke page's work inside a dedicated module worker, where the runtime will run: WebGPU from WorkerNavigator.
import { browserDevice, provokeGpuError } from './gpu.ts';
import { rmsNormCase } from './rmsnorm-case.ts';

export type WorkerRequest = { op: 'rmsnorm'; rows: number; D: number } | { op: 'gpu-error' };

self.onmessage = async (e: MessageEvent<WorkerRequest>) => {
  try {
    const { device } = await browserDevice();
    const req = e.data;
    const result = req.op === 'rmsnorm' ? await rmsNormCase(device, req.rows, req.D) : await provokeGpuError(device);
    device.destroy();
    self.postMessage({ result });
  } catch (err) {
    self.postMessage({ error: (err as Error).stack ?? String(err) });
  }
};
