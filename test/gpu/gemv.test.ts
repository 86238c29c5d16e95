// The decode GEMV's prologues and epilogue (shaders/gemv.wgsl): the input rows (one token, or the 3 of a verify
// step, also split into token groups) built in workgroup memory from the residual stream (RMSNorm of h + pending
// deltas, h + deltas stored once) or from the GDN output (the gated per-head norm), and the in_proj's conv epilogue. Each against the CPU reference on odd shapes, in every weight
// format, with reductions on subgroups and in workgroup memory (SwiftShader's subgroups are 4 wide: team 4 runs
// reduce.subgroups.wgsl, the default teams the portable reduce.wgsl; a context without subgroups runs it at team 4).
import { describe, expect, it } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { matmul, type MatmulTuning } from '../../src/kernels/matmul.ts';
import { causalConv1d } from '../../src/kernels/conv.ts';
import { packWeight, unpackWeight, type WeightFormat } from '../../src/quant/formats.ts';
import * as ref from '../../src/reference/ops.ts';
import { withGpuErrors, poisoned, uploadWeight } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/compare.ts';
import { randn } from '../helpers/random.ts';

const FORMATS: WeightFormat[] = ['f32', 'f16', 'q4', 'q8'];
const seen = (w: Float32Array, N: number, K: number, format: WeightFormat) => unpackWeight(packWeight(w, N, K, format), N, K, format);
const add = (...xs: Float32Array[]) => xs.reduce((a, b) => a.map((v, i) => Math.fround(v + b[i])));
/** The first rows against `want`; the rest must keep the poison (no token group writes past T). */
function expectRows(name: string, got: Float32Array, want: Float32Array, tol: { rel: number }) {
  expectClose(name, got.subarray(0, want.length), want, tol);
  expect(got.subarray(want.length).every(Number.isNaN), `${name}: nothing written past the step's rows`).toBe(true);
}

/** [label, context options, tuning]: both reduction builds. */
const VARIANTS: [string, { subgroups?: boolean }, MatmulTuning][] = [
  ['subgroup reductions (team 4)', {}, { team: 4 }],
  ['workgroup reductions (team 4)', { subgroups: false }, { team: 4 }],
  ['default team', {}, {}],
  ['two workgroups taking tiles in turn, tokens in groups of 2', {}, { team: 8, groups: 2, tokens: 2 }],
];

describe('gemv rmsnorm prologue', () => {
  for (const [variant, ctxOpts, tuning] of VARIANTS) {
    for (const format of FORMATS) {
      for (const [N, K] of [[37, 100], [70, 64]]) {
        it(`${format} N=${N} K=${K}, 0..2 pending deltas, 1 and 3 tokens, h_out: ${variant}`, () =>
          withGpuErrors(async (device) => {
            const ctx = new GpuContext(device, ctxOpts);
            const wf = randn(N * K, N + K, 0.5), w = uploadWeight(ctx, wf, N, K, format, 'w'), wd = seen(wf, N, K, format);
            const h = randn(3 * K, 1, 2), d0 = randn(3 * K, 2), d1 = randn(3 * K, 3), norm = randn(K, 4, 0.3);
            const bufs = { h: ctx.upload(h, 'h'), d0: ctx.upload(d0, 'd0'), d1: ctx.upload(d1, 'd1'), norm: ctx.upload(norm, 'norm') };
            for (const [n, T] of [[0, 1], [1, 3], [2, 3]]) {
              const deltas = [bufs.d0, bufs.d1].slice(0, n), sum = add(h, ...[d0, d1].slice(0, n)).subarray(0, T * K);
              const y = poisoned(device, 3 * N * 4), hOut = poisoned(device, 3 * K * 4);
              ctx.run([...matmul(ctx, bufs.h, w, y, T, { tuning, prologue: { kind: 'rmsnorm', weight: bufs.norm, eps: 1e-6, deltas, hOut } })]);
              expectRows(`${n} deltas, ${T} tokens`, await ctx.readF32(y, 3 * N), ref.linear(ref.rmsNorm(sum, norm, K, 1e-6), wd, T, K, N), { rel: 2e-5 });
              const hGot = await ctx.readF32(hOut, 3 * K);
              expect(Array.from(hGot.subarray(0, T * K)), 'h_out = h + deltas').toEqual(Array.from(sum));
              expect(hGot.subarray(T * K).every(Number.isNaN), 'h_out past T untouched').toBe(true);
            }
          }));
      }
    }
  }
});

describe('gemv gated RMSNorm prologue (GDN out_proj)', () => {
  for (const [variant, ctxOpts, tuning] of VARIANTS) {
    for (const [format, heads, D, N] of [['q4', 4, 24, 41], ['f32', 3, 16, 30], ['q8', 32, 8, 17]] as const) {
      it(`${format} ${heads} heads of ${D}, N=${N}, 1 and 3 tokens: ${variant}`, () =>
        withGpuErrors(async (device) => {
          const ctx = new GpuContext(device, ctxOpts);
          const K = heads * D, zOffset = 13, zStride = zOffset + K + 5;
          const wf = randn(N * K, 5, 0.5), w = uploadWeight(ctx, wf, N, K, format, 'w'), wd = seen(wf, N, K, format);
          const core = randn(3 * K, 6), z = randn(3 * zStride, 7), norm = randn(D, 8, 0.5);
          const bufs = { core: ctx.upload(core, 'core'), z: ctx.upload(z, 'z'), norm: ctx.upload(norm, 'norm') };
          for (const T of [1, 3]) {
            const y = poisoned(device, 3 * N * 4);
            ctx.run([...matmul(ctx, bufs.core, w, y, T, { tuning, prologue: { kind: 'gated', weight: bufs.norm, eps: 1e-6, z: bufs.z, zOffset, zStride, headDim: D } })]);
            const zs = new Float32Array(T * K);
            for (let t = 0; t < T; t++) zs.set(z.subarray(t * zStride + zOffset, t * zStride + zOffset + K), t * K);
            const x = ref.rmsNormGated(core.subarray(0, T * K), zs, norm, D, 1e-6);
            expectRows(`y, ${T} tokens`, await ctx.readF32(y, 3 * N), ref.linear(x, wd, T, K, N), { rel: 2e-5 });
          }
        }));
    }
  }
});

// Decode runs the conv inside the GDN in_proj GEMV: one token, the first C of N outputs, the RMSNorm prologue too.
// Against rmsnorm -> matmul -> causalConv1d on the same inputs, three tokens in a row (the state carries over).
describe('gemv rmsnorm prologue + conv epilogue (GDN in_proj)', () => {
  for (const [variant, ctxOpts, tuning] of VARIANTS) {
    for (const [format, N, K, C, width] of [['f32', 300, 64, 260, 4], ['q4', 90, 96, 80, 4], ['q4', 41, 64, 41, 2]] as const) {
      it(`${format} N=${N} K=${K}, conv on ${C} channels, width ${width}: ${variant}`, () =>
        withGpuErrors(async (device) => {
          const ctx = new GpuContext(device, ctxOpts);
          const wf = randn(N * K, 7, 0.5), w = uploadWeight(ctx, wf, N, K, format, 'in_proj'), wd = seen(wf, N, K, format);
          const taps = randn(C * width, 8, 0.5), norm = randn(K, 11, 0.3);
          let state = randn(C * (width - 1), 9);
          const gpu = { state: ctx.upload(state, 'state'), proj: poisoned(device, N * 4), y: poisoned(device, C * 4) };
          const bufs = { taps: ctx.upload(taps, 'taps'), norm: ctx.upload(norm, 'norm') };
          for (let t = 0; t < 3; t++) {
            const h = randn(K, 10 + t), d = randn(K, 20 + t);
            const conv = { channels: C, K: width, w: bufs.taps, state: gpu.state, y: gpu.y };
            ctx.run([...matmul(ctx, ctx.upload(h, 'h'), w, gpu.proj, 1, { tuning, prologue: { kind: 'rmsnorm', weight: bufs.norm, eps: 1e-6, deltas: [ctx.upload(d, 'd')] }, conv })]);
            const proj = ref.linear(ref.rmsNorm(add(h, d), norm, K, 1e-6), wd, 1, K, N);
            const want = ref.causalConv1dSilu(proj.subarray(0, C), taps, state, 1, C, width);
            state = want.state;
            expectClose(`token ${t}: projection`, await ctx.readF32(gpu.proj, N), proj, { rel: 2e-5 });
            expectClose(`token ${t}: y`, await ctx.readF32(gpu.y, C), want.y, { rel: 2e-5 });
            expectClose(`token ${t}: state`, await ctx.readF32(gpu.state, C * (width - 1)), want.state, { rel: 2e-5 });
          }
        }));
    }
  }
  it('the unfused pair agrees: rmsnorm prologue + conv epilogue == projection then causalConv1d', () =>
    withGpuErrors(async (device) => {
      const ctx = new GpuContext(device);
      const N = 90, K = 96, C = 80, width = 4;
      const w = uploadWeight(ctx, randn(N * K, 7, 0.5), N, K, 'q4', 'in_proj'), taps = ctx.upload(randn(C * width, 8, 0.5), 'taps');
      const norm = ctx.upload(new Float32Array(K), 'norm'), state0 = randn(C * (width - 1), 9), h = ctx.upload(randn(K, 3), 'h');
      const fused = { state: ctx.upload(state0, 's'), proj: poisoned(device, N * 4), y: poisoned(device, C * 4) };
      const plain = { state: ctx.upload(state0, 's'), proj: poisoned(device, N * 4), y: poisoned(device, C * 4) };
      ctx.run([
        ...matmul(ctx, h, w, fused.proj, 1, { prologue: { kind: 'rmsnorm', weight: norm, eps: 1e-6, deltas: [] }, conv: { channels: C, K: width, w: taps, state: fused.state, y: fused.y } }),
        ...matmul(ctx, h, w, plain.proj, 1, { prologue: { kind: 'rmsnorm', weight: norm, eps: 1e-6, deltas: [] } }),
        causalConv1d(ctx, plain.proj, N, taps, plain.state, plain.y, 1, C, width),
      ]);
      expect(Array.from(await ctx.readF32(fused.proj, N))).toEqual(Array.from(await ctx.readF32(plain.proj, N)));
      expectClose('y', await ctx.readF32(fused.y, C), await ctx.readF32(plain.y, C), { rel: 1e-6 });
      expect(Array.from(await ctx.readF32(fused.state, C * (width - 1)))).toEqual(Array.from(await ctx.readF32(plain.state, C * (width - 1))));
    }));
});
