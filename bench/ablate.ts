// Ablation of decode kernels at the real shapes: each variant is encoded `inner` times in one compute pass between
// two timestamps (as in a token's list: each dispatch waits for the one before), median of `reps`, divided by inner.
// A token reads every weight once, so each variant cycles through copies of its weights (or expert choices) that
// together pass the 50 MB L2: a kernel repeated on the same 15 MB would read it from L2 and look faster than it is.
// Beside them the small-read ceilings (a plain streaming read of as many bytes as one kernel moves, in the same way)
// and an empty dispatch, so each variant reads against what a kernel of its size can reach at all.
import { GpuContext, type Op } from '../src/gpu/context.ts';
import { matmul, type MatmulTuning, type GemvPrologue } from '../src/kernels/matmul.ts';
import { router, moeDecode, createMoeScratch, fusedRouteShape, type MoeShape } from '../src/kernels/moe.ts';
import { attentionDecode, decodeSplitLen } from '../src/kernels/attention.ts';
import { gdnStep } from '../src/kernels/gdn.ts';
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

/** The shapes ablated: the 80B-A3B ones, and toys for SwiftShader (test/gpu/bench.test.ts keeps the suite running). */
const ABLATION_SHAPES = {
  real: {
    reps: 9, inner: 20,
    readsMiB: [1, 4, 16, 64], copyBytes: 128 * 2 ** 20, // past the H100's 50 MB L2
    // [format, N, K, tunings alone, tunings with the decode prologue]
    gemvs: [['q4', 12352, 2048, [{}], [{}]], ['q4', 2048, 4096, [{}, { rows: 2 }], [{}, { rows: 2 }]],
      ['f32', 513, 2048, [{}], [{}, { teams: 2 }, { teams: 4 }]], ['f16', 513, 2048, [{}], [{}, { teams: 2 }]]],
    moe: { E: 512, k: 10, H: 2048, I: 512 }, gateUps: [{ wg: 384, groups: 3 }], downs: [{ wg: 512, groups: 2 }, { wg: 256, groups: 2 }, { wg: 1024, groups: 4 }, { wg: 512, groups: 4 }], attn: { Hq: 16, Hkv: 2, D: 256, R: 64 }, keys: [4096, 32768], gdn: [16, 32, 128, 128], gateD: 128,
    // attention decode + combine, f16 K/V, by split length (0: decodeSplitLen's)
    splitKeys: [4096, 32768, 262144], splitLens: [0, 32, 64, 128, 256, 512, 1024, 2048],
  },
  tiny: {
    reps: 1, inner: 2, // a guard against rot on SwiftShader: every variant runs, none is timed well
    readsMiB: [1 / 16], copyBytes: 1 << 16,
    gemvs: [['q4', 96, 64, [{}, { rows: 2 }], [{}]], ['q4', 64, 128, [{}], [{}]], ['f32', 17, 64, [{}], [{}, { teams: 2 }]]],
    moe: { E: 16, k: 4, H: 64, I: 32 }, gateUps: [{ wg: 128, groups: 2 }], downs: [{ wg: 128, groups: 2 }], attn: { Hq: 4, Hkv: 2, D: 32, R: 16 }, keys: [40], gdn: [2, 4, 16, 16], gateD: 16,
    splitKeys: [40], splitLens: [0, 4],
  },
} as const;

export async function runAblation(ctx: GpuContext, readGBs: number, shapes: keyof typeof ABLATION_SHAPES = 'real'): Promise<string> {
  const S = ABLATION_SHAPES[shapes];
  const rows: AblationRow[] = [];
  const add = async (name: string, ops: Op[], bytes?: number) => rows.push({ name, us: await passUs(ctx, ops, S.reps, S.inner), bytes });
  const filled = (bytes: number, mask = 0x3f7fffff) => filledBuffer(ctx, bytes, mask);
  const sink = ctx.buffer(1 << 20, 'sink');

  await add('empty dispatch, 1 workgroup', [ctx.op('tick', 'probe.wgsl', 'tick', {}, [ctx.uniform(new Uint32Array([1, 0, 0, 0])), sink], [1])]);
  await add('empty dispatch, 512 workgroups', [ctx.op('tick', 'probe.wgsl', 'tick', {}, [ctx.uniform(new Uint32Array([1, 0, 0, 0])), sink], [512])]);
  for (const mib of S.readsMiB) {
    const big = filled(mib * 2 ** 20, 0xffffffff);
    for (const groups of [132 * 4, 132 * 16]) {
      await add(`streaming read ${mib} MiB, ${groups} workgroups`, [ctx.op('read_sum', 'probe.wgsl', 'read_sum', {}, [ctx.uniform(new Uint32Array([1 << 18, 0, 7, 0])), sink, big], [groups])], mib * 2 ** 20);
    }
    big.destroy();
  }

  // GEMV tunings at the GDN in_proj shape (q4 12352 x 2048), the out_proj shape (q4 2048 x 4096) and the router
  // (f32 513 x 2048): each over copies of the weight that pass the L2 together.
  const weight = (format: WeightFormat, N: number, K: number) => ({ buffer: filled(packedWords(format, N, K) * 4, format === 'f32' ? 0x3c7fffff : 0x3bff3bff), offset: 0, format, N, K });
  const copies = (bytes: number) => Math.max(2, Math.ceil(S.copyBytes / bytes));
  for (const [format, N, K, tunes, prologueTunes] of S.gemvs as unknown as [WeightFormat, number, number, MatmulTuning[], MatmulTuning[]][]) {
    const bytes = packedWords(format, N, K) * 4, ws = Array.from({ length: copies(bytes) }, () => weight(format, N, K));
    const x = filled(K * 4), y = ctx.buffer(N * 4, 'y');
    for (const t of tunes) await add(`gemv ${format} ${N}x${K} ${JSON.stringify(t)}`, ws.flatMap((w) => matmul(ctx, x, w, y, 1, { tuning: t })), bytes);
    // the same with its decode prologue: what building the input row costs
    const norm = filled(K * 4, 0x3c7fffff), d0 = filled(K * 4), d1 = filled(K * 4), hOut = ctx.buffer(K * 4, 'h out');
    const prologue: GemvPrologue = format === 'q4' && N < K ? { kind: 'gated', weight: norm, eps: 1e-6, z: d0, zOffset: 0, headDim: S.gateD }
      : { kind: 'rmsnorm', weight: norm, eps: 1e-6, deltas: N < 1024 ? [d0, d1] : [d0], hOut: N < 1024 ? hOut : undefined };
    for (const t of prologueTunes) {
      await add(`gemv ${format} ${N}x${K} ${JSON.stringify(t)} + its decode prologue (${prologue.kind})`, ws.flatMap((w) => matmul(ctx, x, w, y, 1, { prologue, tuning: t })), bytes);
    }
    for (const b of [...ws.map((w) => w.buffer), x, y, norm, d0, d1, hOut]) b.destroy();
  }

  // MoE decode at the real shape over 12 different expert choices (168 MB of experts): the gate/up GEMV routed
  // (expert ids given), normed, normed + routing itself; the router alone in the fused shape; down + combine.
  const s: MoeShape = { ...S.moe, format: 'q4' };
  const gu = packedWords('q4', 2 * s.I, s.H) * 4, dn = packedWords('q4', s.H, s.I) * 4;
  const pairs = s.k + 1, choices = copies(pairs * (gu + dn)), w = filled(s.k * 4);
  const slotOf = ctx.upload(Uint32Array.from({ length: s.E + 1 }, (_, e) => e), 'slot_of');
  const common = { x: filled(s.H * 4), w, slotOf, gateUp: filled((s.E + 1) * gu, 0x3bff3bff), down: filled((s.E + 1) * dn, 0x3bff3bff), shared: filled(s.H * 4), out: ctx.buffer(s.H * 4, 'out') };
  const scratch = createMoeScratch(ctx, 1, s), norm = filled(s.H * 4, 0x3c7fffff);
  const sets = Array.from({ length: choices }, (_, c) => ({
    ...common,
    idx: ctx.upload(Uint32Array.from({ length: s.k }, (_, j) => (c * s.k + j) % s.E), 'idx'),
    logits: filledBuffer(ctx, (s.E + 1) * 4, 0x3f7fffff, 'logits', 1000 + c),
  }));
  const opts = { sharedSlot: s.E };
  const route = { norm, eps: 1e-6, normTopk: true };
  await add('moe gate_up, expert ids given', sets.map((b) => moeDecode(ctx, b, 1, s, scratch, opts)[0]), pairs * gu);
  await add('moe gate_up, expert ids given, + rmsnorm', sets.map((b) => moeDecode(ctx, b, 1, s, scratch, { ...opts, route: { ...route, routed: true } })[0]), pairs * gu);
  await add('moe down + combine', sets.map((b) => moeDecode(ctx, b, 1, s, scratch, opts)[1]), pairs * dn);
  const routerShape = fusedRouteShape(ctx, s, true);
  await add(`router softmax + top-${s.k} of ${s.E} (the fused op's shape)`, sets.map((b) => router(ctx, b.logits, b.idx, w, 1, routerShape)));
  const portable = new GpuContext(ctx.device, { subgroups: false });
  await add('the same router, reductions in workgroup memory', sets.map((b) => router(portable, b.logits, b.idx, w, 1, routerShape)));
  await add('moe gate_up, routes + rmsnorm (the decode op)', sets.map((b) => moeDecode(ctx, b, 1, s, scratch, { ...opts, route })[0]), pairs * gu);
  for (const gateUp of S.gateUps) {
    await add(`moe gate_up, routes + rmsnorm, ${JSON.stringify(gateUp)}`, sets.map((b) => moeDecode(ctx, b, 1, s, scratch, { ...opts, route, gateUp })[0]), pairs * gu);
  }
  for (const down of S.downs) {
    await add(`moe down + combine, ${JSON.stringify(down)}`, sets.map((b) => moeDecode(ctx, b, 1, s, scratch, { ...opts, down })[1]), pairs * dn);
  }

  // Attention decode (real dims: 4K and 32K keys) over copies of the cache (layers) that pass the L2 together.
  const dims = { ...S.attn, eps: 1e-6 };
  for (const [keys, halfKv] of S.keys.flatMap((k) => [[k, false], [k, true]] as const)) {
    const d = { ...dims, maxT: keys, halfKv }, kv = 2 * d.Hkv * keys * d.D * (halfKv ? 2 : 4);
    const caches = Array.from({ length: copies(kv) }, () => ({ k: filled(kv / 2, halfKv ? 0x3bff3bff : 0x3c7fffff), v: filled(kv / 2, halfKv ? 0x3bff3bff : 0x3f7fffff) }));
    const qkv = filled((d.Hq * 2 * d.D + 2 * d.Hkv * d.D) * 4, 0x3f7fffff), qn = filled(d.D * 4, 0x3c7fffff), inv = filled(d.R * 2, 0x3c7fffff);
    const out = ctx.buffer(d.Hq * d.D * 4, 'attn out');
    const ops = caches.map((c) => attentionDecode(ctx, qkv, qn, qn, inv, c.k, c.v, out, keys - 1, d));
    await add(`attn_decode at ${keys} keys, ${halfKv ? 'f16' : 'f32'} K/V`, ops.map((o) => o[0]), kv);
    if (!halfKv) await add(`attn_combine at ${keys} keys`, ops.map((o) => o[1]));
    for (const c of caches) { c.k.destroy(); c.v.destroy(); }
  }

  // Attention decode + combine of one layer by split length (long contexts: issue #18), f16 K/V.
  for (const keys of S.splitKeys) {
    const d = { ...dims, maxT: keys, halfKv: true }, kv = 2 * d.Hkv * keys * d.D * 2;
    const caches = Array.from({ length: copies(kv) }, () => ({ k: filled(kv / 2, 0x3bff3bff), v: filled(kv / 2, 0x3bff3bff) }));
    const qkv = filled((d.Hq * 2 * d.D + 2 * d.Hkv * d.D) * 4, 0x3f7fffff), qn = filled(d.D * 4, 0x3c7fffff), inv = filled(d.R * 2, 0x3c7fffff);
    const out = ctx.buffer(d.Hq * d.D * 4, 'attn out');
    for (const len of S.splitLens) {
      if (len > keys) continue;
      const ops = caches.map((c) => attentionDecode(ctx, qkv, qn, qn, inv, c.k, c.v, out, keys - 1, d, undefined, len || undefined));
      const name = `attn_decode + combine at ${keys} keys, f16, ${len ? `${len} keys a split` : `decodeSplitLen's ${decodeSplitLen(keys, d)}`}`;
      rows.push({ name, us: 2 * await passUs(ctx, ops.flat(), S.reps, S.inner), bytes: kv }); // passUs: a dispatch; the pair is two
    }
    for (const c of caches) { c.k.destroy(); c.v.destroy(); }
  }

  // The GDN decode step (32 value heads of 128 x 128 state) over copies of the state (layers).
  {
    const [hk, hvs, dk, dv] = S.gdn;
    const g = { linearNumKeyHeads: hk, linearNumValueHeads: hvs, linearKeyHeadDim: dk, linearValueHeadDim: dv };
    const conv = 2 * hk * dk + hvs * dv, P = conv + hvs * dv + 2 * hvs, stateBytes = hvs * dk * dv * 4;
    const y = filled(conv * 4, 0x3f7fffff), proj = filled(P * 4, 0xbc7fffff), hv = filled(hvs * 4, 0xbc7fffff), o = ctx.buffer(hvs * dv * 4, 'o');
    const states = Array.from({ length: copies(2 * stateBytes) }, () => filled(stateBytes, 0x3c7fffff));
    await add('gdn_step T=1 (state read + written)', states.map((st) => gdnStep(ctx, y, proj, P, hv, hv, st, o, 1, g)), 2 * stateBytes);
    for (const b of states) b.destroy();
  }

  const lines = ['| variant | us a dispatch (in one pass) | GB/s | of read ceiling |', '|---|---|---|---|'];
  for (const r of rows) {
    const gbs = r.bytes ? r.bytes / r.us / 1e3 : undefined;
    lines.push(`| ${r.name} | ${r.us.toFixed(2)} | ${gbs ? gbs.toFixed(0) : '-'} | ${gbs ? (gbs / readGBs).toFixed(2) : '-'} |`);
  }
  return lines.join('\n');
}
