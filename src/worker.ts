// The Web Worker entry (built to dist/lib/worker.js), for both kinds of worker: start it as a module worker, e.g.
// `new Worker(new URL('./worker.js', import.meta.url), { type: 'module' })`, and pass it to createWorkerEngine; or
// pass its URL to createSharedEngine, which starts it as the site's SharedWorker.
import { exposeEngine } from './engine/worker-host.ts';

exposeEngine();
