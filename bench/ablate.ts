// Ablation of decode kernels at the real shapes: each variant is encoded `inner` times in one compute pass between
// two timestamps (as in a token's list: each dispatch waits for the one before), median of `reps`, divided by inner.
// Beside them the small-read ceilings (a plain streaming read of as many bytes as one kernel moves, in the same way)
// and an empty dispatch, so each variant reads against what a kernel of its size can reach at all.
import { GpuContext, type Op } from '../src/gpu/context.ts';
import { matmul, type MatmulTuning } from '../src/kernels/matmul.ts';
import { router, moeDecode, createMoeScratch, type MoeShape } from '../src/kernels/moe.ts';
import { packedWords, type WeightFormat } from '../src/quant/formats.ts';
import './probe.ts';
import { filledBuffer } from './bench.ts';

export interface AblationRow { name: string; us: number; bytes?: number }

const QUERY_RESOLVE = 0x200;
const MAP_READ = 0x1;

/** Median us of one dispatch of `ops`, each encoded `inner` times in one pass. */
async function passUs(ctx: GpuContext, ops: Op[], reps = 9, inner = 20): Promise<number> {
  const device = ctx.device;
  const querySet = device.createQuerySet({ type: 'timestamp', count: 2 });
  const resolve = device.createBuffer({ size: 16, usage: QUERY_RESOLVE | 0x4 });
  const read = device.createBuffer({ size: 16, usage: MAP_READ | 0x8 });
  const us: number[] = [];
  for (let r = 0; r <= reps; r++) {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
    for (let i = 0; i < inner; i++) {
      for (const op of ops) {
        pass.setPipeline(op.pipeline);
        pass.setBindGroup(0, op.bindGroup);
        pass.dispatchWorkgroups(op.workgroups[0], op.workgroups[1] ?? 1, op.workgroups[2] ?? 1);
      }
    }
    pass.end();
    enc.resolveQuerySet(querySet, 0, 2, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, read, 0, 16);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(MAP_READ);
    const t = new BigUint64Array(read.getMappedRange().slice(0));
    read.unmap();
    if (r > 0) us.push(Number(t[1] - t[0]) / 1e3 / inner / ops.length);
  }
  for (const b of [querySet, resolve, read]) b.destroy();
  return [...us].sort((a, b) => a - b)[Math.floor(us.length / 2)];
}

export async function runAblation(ctx: GpuContext, readGBs: number): Promise<string> {
  const rows: AblationRow[] = [];
  const add = async (name: string, ops: Op[], bytes?: number) => rows.push({ name, us: await passUs(ctx, ops), bytes });
  const filled = (bytes: number, mask = 0x3f7fffff) => filledBuffer(ctx, bytes, mask);
  const sink = ctx.buffer(1 << 20, 'sink');

  await add('empty dispatch, 1 workgroup', [ctx.op('tick', 'probe.wgsl', 'tick', {}, [ctx.uniform(new Uint32Array([1, 0, 0, 0])), sink], [1])]);
  await add('empty dispatch, 512 workgroups', [ctx.op('tick', 'probe.wgsl', 'tick', {}, [ctx.uniform(new Uint32Array([1, 0, 0, 0])), sink], [512])]);
  for (const mib of [1, 4, 16, 64]) {
    const big = filled(mib << 20, 0xffffffff);
    for (const groups of [132 * 4, 132 * 16]) {
      await add(`streaming read ${mib} MiB, ${groups} workgroups`, [ctx.op('read_sum', 'probe.wgsl', 'read_sum', {}, [ctx.uniform(new Uint32Array([1 << 18, 0, 7, 0])), sink, big], [groups])], mib << 20);
    }
    big.destroy();
  }

  // GEMV tunings at the GDN in_proj shape (q4 12352 x 2048) and the out_proj shape (q4 2048 x 4096).
  const weight = (format: WeightFormat, N: number, K: number) => ({ buffer: filled(packedWords(format, N, K) * 4, 0x3bff3bff), offset: 0, format, N, K });
  for (const [N, K] of [[12352, 2048], [2048, 4096]]) {
    const w = weight('q4', N, K), x = filled(K * 4), y = ctx.buffer(N * 4, 'y');
    const tunes: MatmulTuning[] = [{}, { team: 32, rows: 1 }, { team: 32, rows: 2 }, { team: 32, rows: 4 }, { team: 16, rows: 1 }, { team: 16, rows: 2 }, { team: 16, rows: 4 }, { team: 8, rows: 4 }, { team: 32, teams: 4, rows: 2 }];
    for (const t of tunes) await add(`gemv q4 ${N}x${K} ${JSON.stringify(t)}`, [matmul(ctx, x, w, y, 1, { tuning: t })], packedWords('q4', N, K) * 4);
    for (const b of [w.buffer, x, y]) b.destroy();
  }

  // MoE decode at the real shape: the gate/up GEMV routed (expert ids given), normed, normed + routing itself; the
  // router alone in the fused shape; the down GEMV + combine.
  const s: MoeShape = { E: 512, k: 10, H: 2048, I: 512, format: 'q4' };
  const gu = packedWords('q4', 2 * s.I, s.H) * 4, dn = packedWords('q4', s.H, s.I) * 4;
  const logits = filled((s.E + 1) * 4), idx = ctx.upload(Uint32Array.from({ length: s.k }, (_, j) => 37 * j + 5), 'idx'), wts = filled(s.k * 4);
  const slotOf = ctx.upload(Uint32Array.from({ length: s.E + 1 }, (_, e) => e), 'slot_of');
  const b = { x: filled(s.H * 4), logits, idx, w: wts, slotOf, gateUp: filled((s.E + 1) * gu, 0x3bff3bff), down: filled((s.E + 1) * dn, 0x3bff3bff), shared: filled(s.H * 4), out: ctx.buffer(s.H * 4, 'out') };
  const scratch = createMoeScratch(ctx, 1, s), norm = filled(s.H * 4, 0x3c7fffff);
  const opts = { sharedSlot: s.E };
  const [plain, down] = moeDecode(ctx, b, 1, s, scratch, opts);
  const [normed] = moeDecode(ctx, b, 1, s, scratch, { ...opts, route: { norm, eps: 1e-6, normTopk: true, routed: true } });
  await add('moe gate_up, expert ids given', [plain], 11 * gu);
  await add('moe gate_up, expert ids given, + rmsnorm', [normed], 11 * gu);
  // the fused one writes idx: time it last
  await add('moe down + combine', [down], 11 * dn);
  await add('router softmax + top-10 of 512, 128 threads, teams of 32', [router(ctx, logits, idx, wts, 1, { E: s.E, k: s.k, normTopk: true, wg: 128, team: 32 })]);
  const portable = new GpuContext(ctx.device, { subgroups: false });
  await add('the same router, reductions in workgroup memory', [router(portable, logits, idx, wts, 1, { E: s.E, k: s.k, normTopk: true, wg: 128, team: 32 })]);
  const [fused] = moeDecode(ctx, b, 1, s, scratch, { ...opts, route: { norm, eps: 1e-6, normTopk: true } });
  await add('moe gate_up, routes + rmsnorm (the decode op)', [fused], 11 * gu);

  const lines = ['| variant | us a dispatch (in one pass) | GB/s | of read ceiling |', '|---|---|---|---|'];
  for (const r of rows) {
    const gbs = r.bytes ? r.bytes / r.us / 1e3 : undefined;
    lines.push(`| ${r.name} | ${r.us.toFixed(2)} | ${gbs ? gbs.toFixed(0) : '-'} | ${gbs ? (gbs / readGBs).toFixed(2) : '-'} |`);
  }
  return lines.join('\n');
}
