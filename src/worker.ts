// The Web Worker entry (built to dist/lib/worker.js): start it as a module worker, e.g.
// `new Worker(new URL('./worker.js', import.meta.url), { type: 'module' })`, and pass it to createWorkerEngine.
import { exposeEngine } from './engine/worker-host.ts';

exposeEngine();
