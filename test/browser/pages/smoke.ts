// The smoke page: exposes `window.smoke` for test/browser/smoke.test.ts to call through page.evaluate.
import { browserDevice, provokeGpuError } from './gpu.ts';
import { rmsNormCase, type CaseResult } from './rmsnorm-case.ts';
import type { WorkerRequest } from './smoke-worker.ts';

const ready = browserDevice();

/** Run one request in a fresh module worker; a worker that fails to load or throws rejects. */
function inWorker<T>(req: WorkerRequest): Promise<T> {
  const worker = new Worker(new URL('./smoke-worker.ts', import.meta.url), { type: 'module' });
  return new Promise<T>((resolve, reject) => {
    worker.onmessage = (e: MessageEvent<{ result?: T; error?: string }>) =>
      'error' in e.data ? reject(new Error(`worker: ${e.data.error}`)) : resolve(e.data.result as T);
    worker.onerror = (e) => reject(new Error(`worker failed: ${e.message || 'could not load the module'}`));
    worker.postMessage(req);
  }).finally(() => worker.terminate());
}

const smoke = {
  adapter: async () => (await ready).adapter,
  page: async (rows: number, D: number) => rmsNormCase((await ready).device, rows, D),
  worker: (rows: number, D: number) => inWorker<CaseResult>({ op: 'rmsnorm', rows, D }),
  provokeGpuError: async (where: 'page' | 'worker') => {
    if (where === 'worker') await inWorker<null>({ op: 'gpu-error' });
    else await provokeGpuError((await ready).device);
  },
};

export type Smoke = typeof smoke;
declare global {
  interface Window {
    smoke: Smoke;
  }
}
window.smoke = smoke;
