import { describe, expect, it } from 'vitest';
import { GpuContext, type GpuContextOptions } from '../../src/gpu/context.ts';
import { matmul, type MatmulTuning } from '../../src/kernels/matmul.ts';
import { weightBytes, type GpuWeight } from '../../src/gpu/packed-weight.ts';
import { packWeight, unpackWeight, type WeightFormat } from '../../src/quant/formats.ts';
import * as ref from '../../src/reference/ops.ts';
import { withGpuErrors, poisoned, uploadWeight, uploadWeights } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/compare.ts';
import { randn } from '../helpers/random.ts';

const FORMATS: WeightFormat[] = ['f32', 'f16', 'q4', 'q8'];
// The kernel sees exactly the dequantised values, so only summation order separates it from the reference (the f32
// GEMM: these contexts turn the int8 one off; its own tests are below).
const TOL = { rel: 1e-5 };
const f32Context = (device: GPUDevice, opts: GpuContextOptions = {}) => new GpuContext(device, { ...opts, int8Matmul: false });

/** The f32 values the GPU sees for `w` stored as `format`. */
const seen = (w: Float32Array, N: number, K: number, format: WeightFormat) => unpackWeight(packWeight(w, N, K, format), N, K, format);

async function run(ctx: GpuContext, x: Float32Array, w: GpuWeight, T: number, tuning?: MatmulTuning) {
  const y = poisoned(ctx.device, T * w.N * 4);
  ctx.run([...matmul(ctx, ctx.upload(x, 'x'), w, y, T, { tuning })]);
  return ctx.readF32(y, T * w.N);
}

describe('matmul', () => {
  // The shared expert's down_proj: x (T, 2K) = [gate | up] read as silu(gate) · up, through the GEMV (T <= 4)
  // and the GEMM, odd and aligned K.
  for (const format of ['f32', 'q4'] as const) {
    for (const [N, K] of [[40, 64], [19, 70]]) {
      it(`${format} swiglu input N=${N} K=${K} T=1,3,9`, () =>
        withGpuErrors(async (device) => {
          const ctx = f32Context(device);
          const wf = randn(N * K, N + K, 0.5), w = uploadWeight(ctx, wf, N, K, format, 'w'), wd = seen(wf, N, K, format);
          for (const T of [1, 3, 9]) {
            const gu = randn(T * 2 * K, T + 40, 2);
            const act = Float32Array.from({ length: T * K }, (_, i) => {
              const t = Math.floor(i / K), k = i % K, g = gu[t * 2 * K + k];
              return (g / (1 + Math.exp(-g))) * gu[t * 2 * K + K + k];
            });
            const y = poisoned(device, T * N * 4);
            ctx.run([...matmul(ctx, ctx.upload(gu, 'gate|up'), w, y, T, { swiglu: true })]);
            expectClose(`${format} swiglu T=${T}`, await ctx.readF32(y, T * N), ref.linear(act, wd, T, K, N), { rel: 1e-4 });
          }
        }));
    }
  }

  const shapes: [number, number, number[]][] = [
    [48, 64, [1, 3, 65, 200]],
    [33, 77, [1, 3, 65, 200]],
    [512, 256, [1, 3, 65, 200]],
  ];
  for (const format of FORMATS) {
    for (const [N, K, Ts] of shapes) {
      it(`${format} N=${N} K=${K} T=${Ts.join(',')}`, () =>
        withGpuErrors(async (device) => {
          const ctx = f32Context(device);
          const wf = randn(N * K, N + K, 0.5);
          const w = uploadWeight(ctx, wf, N, K, format, 'w');
          const wd = seen(wf, N, K, format);
          for (const T of Ts) {
            const x = randn(T * K, T);
            expectClose(`${format} T=${T}`, await run(ctx, x, w, T), ref.linear(x, wd, T, K, N), TOL);
          }
        }));
    }
  }

  // 70,000 rows at one row a workgroup (one team of 4 lanes): past 65,535 workgroups, so the grid folds into two
  // dimensions (the real lm_head stays under it; the fold must still be right).
  it('q4 N=70000 K=32 T=1, folded GEMV grid', () =>
    withGpuErrors(async (device) => {
      const ctx = f32Context(device);
      const N = 70000, K = 32, wf = randn(N * K, 9, 0.5), x = randn(K, 10);
      const w = uploadWeight(ctx, wf, N, K, 'q4', 'w');
      expectClose('folded', await run(ctx, x, w, 1, { team: 4, teams: 1, rows: 1 }), ref.linear(x, seen(wf, N, K, 'q4'), 1, K, N), TOL);
    }));

  it('GEMV tuning variants agree: rows a team, token blocks, narrow teams, both reduction builds', () =>
    withGpuErrors(async (device) => {
      const N = 37, K = 100;
      for (const ctx of [f32Context(device), f32Context(device, { subgroups: false })]) {
        for (const format of FORMATS) {
          const wf = randn(N * K, 4, 0.5), w = uploadWeight(ctx, wf, N, K, format, 'w'), wd = seen(wf, N, K, format);
          for (const [T, tuning] of [[3, { rows: 4, team: 4 }], [2, { rows: 2, team: 8 }], [7, { gemvMaxT: 8, rows: 2 }], [1, { rows: 1, team: 32 }]] as const) {
            const x = randn(T * K, 5);
            expectClose(`${format} T=${T} ${JSON.stringify(tuning)}`, await run(ctx, x, w, T, tuning), ref.linear(x, wd, T, K, N), TOL);
          }
        }
      }
    }));

  it('weights at 256-byte aligned offsets of one shared buffer, on both paths', () =>
    withGpuErrors(async (device) => {
      const ctx = f32Context(device);
      // Odd sizes so each weight ends mid-way through a 256-byte block; the next one starts at an offset.
      const parts = FORMATS.map((format, i) => ({ w: randn(33 * 77, 20 + i, 0.5), N: 33, K: 77, format }));
      const ws = uploadWeights(ctx, parts, 'stack');
      for (const [i, w] of ws.entries()) {
        if (i > 0 && w.offset < ws[i - 1].offset + weightBytes(ws[i - 1].format, 33, 77)) throw new Error('overlapping weights');
        const wd = seen(parts[i].w, 33, 77, w.format);
        for (const T of [1, 65]) {
          const x = randn(T * 77, 30 + T);
          expectClose(`${w.format}@${w.offset} T=${T}`, await run(ctx, x, w, T), ref.linear(x, wd, T, 77, 33), TOL);
        }
      }
    }));

  // The int8 GEMM (q4 weights, T > 4): against the CPU emulation of exactly its arithmetic (quantizeRowsInt8: rounding
  // and scales as the shader's f32 steps), and against the exact product within the error int8 activations cost.
  // Odd N, K and T cross the 128-token x 64-row tiles, the 2-group k-tiles and the padding of a last group (the model
  // takes this path above 256 tokens; int8Above: 4 brings it down to these sizes).
  for (const [N, K, Ts] of [[48, 64, [5, 65, 200]], [33, 77, [9, 129]], [130, 256, [131]], [64, 96, [128]]] as const) {
    it(`int8 GEMM q4 N=${N} K=${K} T=${Ts.join(',')}`, () =>
      withGpuErrors(async (device) => {
        const ctx = new GpuContext(device);
        if (!ctx.int8Matmul) throw new Error('this WebGPU has no packed_4x8_integer_dot_product: the int8 path is untested');
        const wf = randn(N * K, N + K, 0.5), packed = packWeight(wf, N, K, 'q4'), w = uploadWeight(ctx, wf, N, K, 'q4', 'w');
        for (const T of Ts) {
          const x = randn(T * K, T + 3);
          const got = await run(ctx, x, w, T, { int8Above: 4 });
          expectClose(`int8 T=${T} vs its emulation`, got, ref.linearInt8Q4(x, packed, T, K, N), { rel: 2e-5 });
          const d = expectClose(`int8 T=${T} vs exact`, got, ref.linear(x, seen(wf, N, K, 'q4'), T, K, N), { rel: 2e-2 });
          expect(d.cos).toBeGreaterThan(0.9999);
        }
      }));
  }

  it('int8 GEMM q4 with the swiglu input, and rows of another op left alone', () =>
    withGpuErrors(async (device) => {
      const ctx = new GpuContext(device), N = 40, K = 70, T = 9;
      const wf = randn(N * K, 7, 0.5), packed = packWeight(wf, N, K, 'q4'), w = uploadWeight(ctx, wf, N, K, 'q4', 'w');
      const gu = randn(T * 2 * K, 8, 2);
      const act = Float32Array.from({ length: T * K }, (_, i) => {
        const t = Math.floor(i / K), k = i % K, g = gu[t * 2 * K + k];
        return Math.fround((g / (1 + Math.exp(-g))) * gu[t * 2 * K + K + k]);
      });
      const y = poisoned(device, (T + 1) * N * 4); // a row past T must keep its poison
      const ops = matmul(ctx, ctx.upload(gu, 'gate|up'), w, y, T, { swiglu: true, tuning: { int8Above: 4 } });
      expect(ops.map((o) => o.label)).toEqual([`quantize_rows(${T}x${K} swiglu)`, `gemm_int8_q4(${T}x${K} swiglu -> ${N})`]);
      ctx.run(ops);
      const all = await ctx.readF32(y, (T + 1) * N);
      expectClose('int8 swiglu', all.subarray(0, T * N), ref.linearInt8Q4(act, packed, T, K, N), { rel: 1e-4 });
      expect(Number.isNaN(all[T * N])).toBe(true);
    }));

  it('steps of up to 256 tokens keep f32 activations; longer ones take int8, unless the context turns it off', () =>
    withGpuErrors(async (device) => {
      const N = 40, K = 64, wf = randn(N * K, 3, 0.5);
      for (const [ctx, T, first] of [[new GpuContext(device), 256, 'gemm_q4'], [new GpuContext(device), 257, 'quantize_rows'], [f32Context(device), 257, 'gemm_q4']] as const) {
        const w = uploadWeight(ctx, wf, N, K, 'q4', 'w'), x = ctx.buffer(T * K * 4, 'x'), y = ctx.buffer(T * N * 4, 'y');
        expect(matmul(ctx, x, w, y, T)[0].label.startsWith(first), `T=${T}`).toBe(true);
      }
    }));
});
