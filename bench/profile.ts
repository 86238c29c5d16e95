// Per-kernel GPU time of one decode token, from timestamp queries: every dispatch of the replayed decode op list
// (plus the greedy sampler) runs in its own compute pass with a begin and an end timestamp, and the same list runs
// again in one pass with a timestamp at each end, so the table also says how much of the token is not kernel time
// (barriers and launch gaps between dependent dispatches). Dispatches are grouped by their label, which names the
// kernel and its shape but not the layer, so "GDN in_proj GEMV" is one row for all 36 GDN layers.
import type { GpuContext, Op, Step } from '../src/gpu/context.ts';

export interface KernelRow {
  label: string;
  dispatches: number; // a token
  usEach: number; // mean over the token's dispatches of each one's median
  msToken: number;
  share: number; // of the summed kernel time
  floorUs?: number; // the larger of bytes / read ceiling and flops / FMA ceiling, where the op says them
}

export interface TokenProfile {
  rows: KernelRow[];
  kernelMs: number; // sum of the kernels, each in its own pass
  onePassMs: number; // the whole list in one pass (median)
  dispatches: number;
}

const QUERY_RESOLVE = 0x200;
const MAP_READ = 0x1;

/** Median per op of `reps` runs of `ops`, each op in its own timed pass; and the median of the list in one timed pass. */
export async function profileOps(ctx: GpuContext, steps: Step[], reps: number, readGBs?: number, fmaTFs?: number): Promise<TokenProfile> {
  const device = ctx.device;
  if (!device.features.has('timestamp-query')) throw new Error('profile: the device has no timestamp-query');
  const ops = steps.filter((s): s is Op => 'pipeline' in s);
  const n = ops.length + 1; // + the one-pass run
  const querySet = device.createQuerySet({ type: 'timestamp', count: 2 * n });
  const resolve = device.createBuffer({ size: 16 * n, usage: QUERY_RESOLVE | 0x4 /* COPY_SRC */ });
  const read = device.createBuffer({ size: 16 * n, usage: MAP_READ | 0x8 /* COPY_DST */ });
  const each: number[][] = ops.map(() => []), whole: number[] = [];
  for (let r = 0; r <= reps; r++) {
    const enc = device.createCommandEncoder();
    ops.forEach((op, i) => {
      const pass = enc.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
      pass.setPipeline(op.pipeline);
      pass.setBindGroup(0, op.bindGroup);
      pass.dispatchWorkgroups(op.workgroups[0], op.workgroups[1] ?? 1, op.workgroups[2] ?? 1);
      pass.end();
    });
    const pass = enc.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * ops.length, endOfPassWriteIndex: 2 * ops.length + 1 } });
    for (const op of ops) {
      pass.setPipeline(op.pipeline);
      pass.setBindGroup(0, op.bindGroup);
      pass.dispatchWorkgroups(op.workgroups[0], op.workgroups[1] ?? 1, op.workgroups[2] ?? 1);
    }
    pass.end();
    enc.resolveQuerySet(querySet, 0, 2 * n, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, read, 0, 16 * n);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(MAP_READ);
    const t = new BigUint64Array(read.getMappedRange().slice(0));
    read.unmap();
    if (r === 0) continue; // warm-up
    ops.forEach((_, i) => each[i].push(Number(t[2 * i + 1] - t[2 * i]) / 1e3));
    whole.push(Number(t[2 * n - 1] - t[2 * n - 2]) / 1e6);
  }
  querySet.destroy();
  resolve.destroy();
  read.destroy();

  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const byLabel = new Map<string, { us: number[]; bytes?: number; flops?: number }>();
  ops.forEach((op, i) => {
    const g = byLabel.get(op.label) ?? { us: [], bytes: op.bytes, flops: op.flops };
    g.us.push(med(each[i]));
    byLabel.set(op.label, g);
  });
  const kernelMs = [...byLabel.values()].reduce((s, g) => s + g.us.reduce((a, b) => a + b, 0), 0) / 1e3;
  const rows = [...byLabel].map(([label, g]): KernelRow => {
    const total = g.us.reduce((a, b) => a + b, 0);
    const floors = [g.bytes !== undefined && readGBs ? g.bytes / readGBs / 1e3 : 0, g.flops !== undefined && fmaTFs ? g.flops / fmaTFs / 1e6 : 0];
    const floorUs = Math.max(...floors) || undefined;
    return { label, dispatches: g.us.length, usEach: total / g.us.length, msToken: total / 1e3, share: total / 1e3 / kernelMs, floorUs };
  }).sort((a, b) => b.msToken - a.msToken);
  return { rows, kernelMs, onePassMs: med(whole), dispatches: ops.length };
}

export function profileMarkdown(p: TokenProfile): string {
  const lines = [
    `${p.dispatches} dispatches; kernels alone (each in its own pass) ${p.kernelMs.toFixed(2)} ms; the whole list in one pass ${p.onePassMs.toFixed(2)} ms`,
    '',
    '| kernel (label) | dispatches | us each | ms in all | share | floor us (bytes/read, flops/FMA) | fraction of floor |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of p.rows) {
    const floor = r.floorUs === undefined ? '-' : r.floorUs.toFixed(2);
    const frac = r.floorUs === undefined ? '-' : (r.floorUs / r.usEach).toFixed(2);
    lines.push(`| ${r.label} | ${r.dispatches} | ${r.usEach.toFixed(1)} | ${r.msToken.toFixed(3)} | ${(100 * r.share).toFixed(1)}% | ${floor} | ${frac} |`);
  }
  return lines.join('\n');
}
