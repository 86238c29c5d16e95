// Kernel benchmark: ceilings of the card (streaming read, f32 FMA, dependent dispatch) and our kernels at the
// real Qwen3-Next-80B-A3B shapes, each as a median over repetitions and a ratio to its ceiling. Weights and
// activations are pseudo-random words filled on the GPU (no files to carry).
//   npm run bench:build; then on the GPU machine: source .gpu/setup.sh; node dist/bench/bench.mjs [--shapes real|tiny]
// `--shapes tiny` runs the same suite at toy sizes: a guard on SwiftShader for relative regressions only.
import { GpuContext, type Op, type Step, type Binding } from '../src/gpu/context.ts';
import { requestNodeDevice } from '../src/gpu/node-device.ts';
import { grid } from '../src/kernels/grid.ts';
import './probe.ts';
import { matmul, quantizeRows } from '../src/kernels/matmul.ts';
import { registerShader, shaderSource } from '../src/gpu/shaders.ts';
import { weightBinding } from '../src/gpu/packed-weight.ts';
import { gdnChunked, gdnRecurrent, gdnStep } from '../src/kernels/gdn.ts';
import { attention, type AttnDims } from '../src/kernels/attention.ts';
import { router, moeDecode, createMoeScratch } from '../src/kernels/moe.ts';
import { FORMAT_ID, packedWords, type WeightFormat } from '../src/quant/formats.ts';
import type { GpuWeight } from '../src/gpu/packed-weight.ts';

export interface Row { name: string; ms: number; work: string; achieved: string; ratio: string }

const SHAPES = {
  real: { H: 2048, Hk: 16, Hv: 32, dk: 128, dv: 128, Hq: 16, Hkv: 2, D: 256, E: 512, k: 10, I: 512, V: 151936, T: 4096, ctx: [4096, 32768], readMiB: 1024 },
  tiny: { H: 64, Hk: 2, Hv: 4, dk: 16, dv: 16, Hq: 4, Hkv: 2, D: 32, E: 16, k: 4, I: 16, V: 512, T: 65, ctx: [70, 130], readMiB: 4 },
};
type Shape = (typeof SHAPES)['real'];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function runBench(shapeName: keyof typeof SHAPES = 'real', reps = 7): Promise<Row[]> {
  const s: Shape = SHAPES[shapeName];
  const device = await requestNodeDevice();
  const ctx = new GpuContext(device), f32Ctx = new GpuContext(device, { int8Matmul: false });
  const rows: Row[] = [];
  const gpuErrors: string[] = []; // a kernel that fails validation does nothing, fast: never report its timing
  device.addEventListener('uncapturederror', (e) => gpuErrors.push((e as GPUUncapturedErrorEvent).error.message));

  const filled = (bytes: number, mask = 0x3f7fffff, label = 'bench') => filledBuffer(ctx, bytes, mask, label);
  const time = (steps: Step[], inner = 10) => timeSteps(ctx, steps, reps, inner);

  // Ceilings.
  const sink = ctx.buffer(1 << 20, 'sink');
  const { ms: readMs, GBs: readBw } = await readCeiling(ctx, s.readMiB, reps);
  rows.push({ name: `ceiling: streaming read ${s.readMiB} MiB`, ms: readMs, work: `${s.readMiB} MiB`, achieved: `${readBw.toFixed(0)} GB/s`, ratio: '1.00 (ceiling)' });
  const fma = await computeCeiling(ctx, 'fma_loop', shapeName === 'real', reps);
  const flops = fma.tops;
  rows.push({ name: 'ceiling: f32 FMA', ms: fma.ms, work: `${fma.opsPerThread} FLOP/thread`, achieved: `${flops.toFixed(1)} TFLOP/s`, ratio: '1.00 (ceiling)' });
  const dot4 = await computeCeiling(ctx, 'dot4_loop', shapeName === 'real', reps);
  rows.push({ name: 'ceiling: dot4I8Packed', ms: dot4.ms, work: `${dot4.opsPerThread} int8 OP/thread`, achieved: `${dot4.tops.toFixed(1)} TOP/s`, ratio: `${(dot4.tops / flops).toFixed(2)} of FMA` });
  const tick = ctx.op('tick', 'probe.wgsl', 'tick', {}, [ctx.uniform(new Uint32Array([1, 0, 0, 0])), sink], [1]);
  const tickUs = (await time(Array.from({ length: 200 }, () => tick), 1)) * 1000 / 200;
  rows.push({ name: 'ceiling: dependent dispatch, one pass', ms: tickUs / 1000, work: '200 dispatches', achieved: `${tickUs.toFixed(2)} us each`, ratio: '-' });

  const bw = (name: string, ms: number, bytes: number) =>
    rows.push({ name, ms, work: `${(bytes / 2 ** 20).toFixed(1)} MiB`, achieved: `${(bytes / ms / 1e6).toFixed(0)} GB/s`, ratio: `${(bytes / ms / 1e6 / readBw).toFixed(2)} of read` });
  const fl = (name: string, ms: number, flop: number) =>
    rows.push({ name, ms, work: `${(flop / 1e9).toFixed(1)} GFLOP`, achieved: `${(flop / ms / 1e9).toFixed(2)} TFLOP/s`, ratio: `${(flop / ms / 1e9 / flops).toFixed(2)} of FMA` });
  const weight = (format: WeightFormat, N: number, K: number): GpuWeight =>
    ({ buffer: filled(packedWords(format, N, K) * 4, 0x3bff3bff, `w ${N}x${K}`), offset: 0, format, N, K });

  // int4 GEMV (decode) and GEMM (prefill) at the real projection shapes.
  const P = 2 * s.Hk * s.dk + 2 * s.Hv * s.dv + 2 * s.Hv;
  for (const [label, N, K] of [['GDN in_proj', P, s.H], ['GDN out_proj', s.H, s.Hv * s.dv], ['attn qkv_proj', s.Hq * 2 * s.D + 2 * s.Hkv * s.D, s.H], ['lm_head', s.V, s.H]] as const) {
    const rows = label === 'lm_head' ? 1 : s.T; // (T, V) f32 logits would pass the 2 GiB binding limit
    const w = weight('q4', N, K), x = filled(s.T * K * 4), y = ctx.buffer(rows * N * 4, 'y');
    bw(`GEMV q4 ${label} ${N}x${K}, T=1`, await time([...matmul(ctx, x, w, y, 1)]), packedWords('q4', N, K) * 4);
    if (label !== 'lm_head') {
      fl(`GEMM q4 ${label} ${N}x${K}, T=${s.T}, f32 activations`, await time(matmul(f32Ctx, x, w, y, s.T), 2), 2 * s.T * N * K);
      const [quantize, gemm] = matmul(ctx, x, w, y, s.T);
      if (gemm) { // where WGSL has packed_4x8_integer_dot_product
        fl(`GEMM q4 ${label} ${N}x${K}, T=${s.T}, int8 activations (quantize + GEMM)`, await time([quantize, gemm], 2), 2 * s.T * N * K);
        fl(`GEMM q4 ${label} ${N}x${K}, T=${s.T}, int8 activations (the GEMM alone)`, await time([gemm], 2), 2 * s.T * N * K);
        // shorter tiles (the experts' GEMMs take TM = 2): the same kernel with 16·TM tokens a workgroup
        const q = quantizeRows(ctx, x, s.T, K), params = ctx.uniform(new Uint32Array([s.T, 0, 0, 0]));
        for (const tm of [2, 4]) {
          const name = `matmul_int8.tm${tm}.wgsl`;
          registerShader(name, shaderSource('matmul_int8.wgsl').replace(/^const TM = 8u;/m, `const TM = ${tm}u;`));
          const op = ctx.op(`gemm_int8 TM=${tm}`, name, 'gemm_int8', { K, SWIGLU: 0, FORMAT: FORMAT_ID.q4, N }, [params, undefined, undefined, q.xs, q.xq, weightBinding(w), y], [Math.ceil(N / 64), Math.ceil(s.T / (16 * tm))]);
          fl(`GEMM q4 ${label} ${N}x${K}, T=${s.T}, int8, the GEMM alone with ${16 * tm}-token tiles`, await time([op], 2), 2 * s.T * N * K);
        }
      }
    }
    for (const b of [w.buffer, x, y]) b.destroy();
  }

  // Decode's in_proj GEMV with its input RMSNorm (prologue) and the conv + SiLU of its conv channels (epilogue).
  {
    const convDim = 2 * s.Hk * s.dk + s.Hv * s.dv, w = weight('q4', P, s.H), x = filled(s.H * 4), y = ctx.buffer(P * 4, 'y');
    const conv = { channels: convDim, K: 4, w: filled(convDim * 4 * 4, 0x3e7fffff), state: filled(convDim * 3 * 4), y: ctx.buffer(convDim * 4, 'conv y') };
    const prologue = { kind: 'rmsnorm' as const, weight: filled(s.H * 4, 0x3c7fffff), eps: 1e-6, deltas: [filled(s.H * 4)] };
    bw(`GEMV q4 GDN in_proj ${P}x${s.H} + rmsnorm prologue + conv epilogue, T=1`, await time([...matmul(ctx, x, w, y, 1, { prologue, conv })]), packedWords('q4', P, s.H) * 4);
    for (const b of [w.buffer, x, y, conv.w, conv.state, conv.y, prologue.weight, prologue.deltas[0]]) b.destroy();
  }

  // Gated DeltaNet core: chunked prefill at T and the recurrent decode step.
  const gcfg = { linearNumKeyHeads: s.Hk, linearNumValueHeads: s.Hv, linearKeyHeadDim: s.dk, linearValueHeadDim: s.dv };
  const q = filled(s.T * s.Hk * s.dk * 4, 0x3c7fffff), kk = filled(s.T * s.Hk * s.dk * 4, 0x3c7fffff);
  const y = filled(s.T * (2 * s.Hk * s.dk + s.Hv * s.dv) * 4, 0x3f7fffff);
  const g = filled(s.T * s.Hv * 4, 0xbc7fffff), beta = filled(s.T * s.Hv * 4, 0x3f3fffff);
  const state = ctx.buffer(s.Hv * s.dk * s.dv * 4, 'state'), o = ctx.buffer(s.T * s.Hv * s.dv * 4, 'o');
  const gdnFlop = s.T * s.Hv * (4 * 64 * (s.dk + s.dv) + 6 * s.dk * s.dv); // ~ per token: intra-chunk + state terms
  fl(`GDN chunked prefill T=${s.T} (~FLOP estimate)`, await time(gdnChunked(ctx, q, kk, y, g, beta, state, o, s.T, gcfg), 2), gdnFlop);
  bw('GDN recurrent step T=1 (state read+write)', await time(gdnRecurrent(ctx, q, kk, y, g, beta, state, o, 1, gcfg)), 2 * s.Hv * s.dk * s.dv * 4);
  const proj = filled(P * 4, 0xbc7fffff), hv = filled(s.Hv * 4, 0xbc7fffff);
  bw('GDN fused step (prep + recurrent) T=1', await time([gdnStep(ctx, y, proj, P, hv, hv, state, o, 1, gcfg)]), 2 * s.Hv * s.dk * s.dv * 4);

  // Attention: prefill at T, decode against each context length (K+V cache read).
  for (const T of [s.T, 1]) {
    for (const C of T === 1 ? s.ctx : [s.T]) {
      const dims: AttnDims = { Hq: s.Hq, Hkv: s.Hkv, D: s.D, R: s.D / 4, maxT: C, eps: 1e-6 };
      const kc = filled(s.Hkv * C * s.D * 4, 0x3c7fffff), vc = filled(s.Hkv * C * s.D * 4, 0x3f7fffff);
      const aq = filled(T * s.Hq * s.D * 4, 0x3c7fffff), gate = filled(T * s.Hq * s.D * 4, 0x3f7fffff), out = ctx.buffer(T * s.Hq * s.D * 4, 'out');
      const ops = attention(ctx, aq, kc, vc, gate, out, T, C - T, dims);
      if (T === 1) bw(`attention decode at ${C} context (KV read)`, await time(ops), 2 * s.Hkv * C * s.D * 4);
      else fl(`attention prefill T=${T} (causal)`, await time(ops, 2), 2 * 2 * s.Hq * s.D * (T * T) / 2);
      for (const b of [kc, vc, aq, gate, out]) b.destroy();
    }
  }

  // MoE: router + top-k, and the decode experts (gate/up + down of k experts, int4).
  const ms = { E: s.E, k: s.k, H: s.H, I: s.I, format: 'q4' as WeightFormat };
  const logits = filled((s.E + 1) * 4), idx = ctx.buffer(s.k * 4, 'idx'), wts = ctx.buffer(s.k * 4, 'w');
  const routerOp = router(ctx, logits, idx, wts, 1, { E: s.E, k: s.k, normTopk: true });
  rows.push({ name: `MoE router softmax+top-${s.k} of ${s.E}, T=1`, ms: await time([routerOp]), work: '-', achieved: '-', ratio: '-' });
  const gateUp = filled(s.E * packedWords('q4', 2 * s.I, s.H) * 4, 0x3bff3bff), down = filled(s.E * packedWords('q4', s.H, s.I) * 4, 0x3bff3bff);
  const slotOf = ctx.upload(Uint32Array.from({ length: s.E }, (_, e) => e), 'slot_of');
  const xb = filled(s.H * 4), shared = filled(s.H * 4), out = ctx.buffer(s.H * 4, 'moe out');
  const buffers: Record<string, Binding> = { x: xb, logits, idx, w: wts, slotOf, gateUp, down, shared, out };
  const expertOps: Op[] = [routerOp, ...moeDecode(ctx, buffers as never, 1, ms, createMoeScratch(ctx, 1, ms))];
  bw(`MoE decode: router + ${s.k} experts (q4) + combine, T=1`, await time(expertOps), s.k * (packedWords('q4', 2 * s.I, s.H) + packedWords('q4', s.H, s.I)) * 4);

  await device.queue.onSubmittedWorkDone();
  device.destroy();
  if (gpuErrors.length) throw new Error(`GPU errors during the benchmark:\n${gpuErrors.join('\n')}`);
  return rows;
}

export function filledBuffer(ctx: GpuContext, bytes: number, mask = 0x3f7fffff, label = 'bench', seed = 12345): GPUBuffer {
  const buf = ctx.buffer(bytes, label), n = Math.ceil(bytes / 4);
  ctx.run([ctx.op(`fill ${label}`, 'probe.wgsl', 'fill', {}, [ctx.uniform(new Uint32Array([n, mask, seed, 0])), buf], grid(Math.ceil(n / 256)))]);
  return buf;
}

/** Median ms of one repetition of `steps`, encoded `inner` times per submit. */
export async function timeSteps(ctx: GpuContext, steps: Step[], reps: number, inner = 10): Promise<number> {
  const all = Array.from({ length: inner }, () => steps).flat();
  ctx.run(all);
  await ctx.device.queue.onSubmittedWorkDone();
  const ms: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    ctx.run(all);
    await ctx.device.queue.onSubmittedWorkDone();
    ms.push((performance.now() - t0) / inner);
  }
  return median(ms);
}

/**
 * An arithmetic ceiling of probe.wgsl: `fma_loop` (f32 FMA, 16 FLOP a round) or `dot4_loop` (dot4I8Packed, 8 chains
 * of 4 multiply-adds: 64 OP a round), in TFLOP/s or TOP/s, over enough workgroups to fill a 132-SM card (real).
 */
export async function computeCeiling(ctx: GpuContext, entry: 'fma_loop' | 'dot4_loop', real: boolean, reps = 7): Promise<{ ms: number; tops: number; opsPerThread: number }> {
  const groups = real ? 132 * 64 : 64, iters = real ? 4096 : 64, perRound = entry === 'fma_loop' ? 16 : 64; // tiny: a rot guard (SwiftShader's dot4 is slow)
  const sink = ctx.buffer(1 << 20, 'sink');
  const op = ctx.op(entry, 'probe.wgsl', entry, {}, [ctx.uniform(new Uint32Array([1 << 18, 0, 7, iters])), sink], [groups]);
  const ms = await timeSteps(ctx, [op], reps, 3);
  sink.destroy();
  return { ms, tops: (groups * 256 * iters * perRound) / ms / 1e9, opsPerThread: iters * perRound };
}

/** The streaming-read ceiling: a grid-stride sum over `MiB` of vec4<u32>, median ms and GB/s. */
export async function readCeiling(ctx: GpuContext, MiB: number, reps = 7): Promise<{ ms: number; GBs: number }> {
  const bytes = MiB << 20, big = filledBuffer(ctx, bytes, 0xffffffff, 'read'), sink = ctx.buffer(1 << 20, 'sink');
  const op = ctx.op('read_sum', 'probe.wgsl', 'read_sum', {}, [ctx.uniform(new Uint32Array([1 << 18, 0, 7, 0])), sink, big], [Math.min(65535, 132 * 16)]);
  const ms = await timeSteps(ctx, [op], reps, 5);
  big.destroy();
  sink.destroy();
  return { ms, GBs: bytes / ms / 1e6 };
}

export function markdown(rows: Row[]): string {
  const lines = ['| what | median ms | work | achieved | ratio to ceiling |', '|---|---|---|---|---|'];
  for (const r of rows) lines.push(`| ${r.name} | ${r.ms.toFixed(4)} | ${r.work} | ${r.achieved} | ${r.ratio} |`);
  return lines.join('\n');
}
