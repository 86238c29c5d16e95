// Node-only: packWeight on a pool of worker threads (one per core but one), for `q3n convert`. The worker script
// is dist/node/pack-worker.mjs beside the bundled CLI; run from source (tests) there is none, and packing stays
// in this thread.
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { packInline, type PackFn } from './packer.ts';

export interface PackPool {
  pack: PackFn;
  threads: number;
  close(): Promise<void>;
}

export function createPackPool(threads = Math.max(1, availableParallelism() - 1)): PackPool {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'pack-worker.mjs');
  if (threads <= 1 || !existsSync(script)) return { pack: packInline, threads: 1, close: async () => {} };
  const workers = Array.from({ length: threads }, () => new Worker(script));
  const pending = new Map<number, { resolve: (u: Uint32Array<ArrayBuffer>) => void; reject: (e: unknown) => void }>();
  const queue: { id: number; w: Float32Array; N: number; K: number; format: string }[] = [];
  const idle = [...workers];
  let next = 0;
  const pump = () => {
    while (idle.length && queue.length) {
      const job = queue.shift()!;
      idle.pop()!.postMessage(job, [job.w.buffer as ArrayBuffer]);
    }
  };
  for (const wk of workers) {
    wk.on('message', (m: { id: number; out: Uint32Array<ArrayBuffer> }) => {
      pending.get(m.id)!.resolve(m.out);
      pending.delete(m.id);
      idle.push(wk);
      pump();
    });
    wk.on('error', (e) => {
      for (const p of pending.values()) p.reject(e);
      pending.clear();
    });
  }
  return {
    threads,
    pack: (w, N, K, format) => new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject });
      // The worker takes ownership of the values: send a copy when `w` is a view into a larger buffer.
      const own = w.byteOffset === 0 && w.byteLength === w.buffer.byteLength ? w : w.slice();
      queue.push({ id, w: own, N, K, format });
      pump();
    }),
    close: async () => {
      await Promise.all(workers.map((wk) => wk.terminate()));
    },
  };
}
