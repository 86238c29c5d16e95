// A worker thread of src/quant/node-pool.ts: packs what it is sent (built to dist/node/pack-worker.mjs).
import { parentPort } from 'node:worker_threads';
import { packWeight, type WeightFormat } from './formats.ts';

parentPort!.on('message', (m: { id: number; w: Float32Array; N: number; K: number; format: WeightFormat }) => {
  const out = packWeight(m.w, m.N, m.K, m.format);
  parentPort!.postMessage({ id: m.id, out }, [out.buffer]);
});
