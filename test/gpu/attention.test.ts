import { describe, it, expect } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { attnPrep, attention, attentionDecode, type AttnDims, type AttnOptions } from '../../src/kernels/attention.ts';
import * as ref from '../../src/reference/ops.ts';
import { withGpuErrors, poisoned } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/compare.ts';
import { randn } from '../helpers/random.ts';
import { locatePreset, type PresetName } from '../helpers/fixtures.ts';
import { f16BitsToF32, f32ToF16Bits } from '../../src/quant/formats.ts';

// ---- K/V caches as the kernels store them: f32, or (halfKv) f16 pairs packed in u32 --------------------------

const roundF16 = (x: Float32Array) => x.map((v) => f16BitsToF32(f32ToF16Bits(v)));
const packF16 = (x: Float32Array) => Uint32Array.from({ length: x.length / 2 }, (_, i) => (f32ToF16Bits(x[2 * i]) | (f32ToF16Bits(x[2 * i + 1]) << 16)) >>> 0);
async function readKv(ctx: GpuContext, b: GPUBuffer, count: number, half = false): Promise<Float32Array> {
  if (!half) return ctx.readF32(b, count);
  return Float32Array.from(new Uint16Array(await ctx.read(b, count * 2)), f16BitsToF32);
}

// ---- CPU side of one attention call: the same steps as the kernels, from src/reference/ops.ts ---------------

/** Split (T, Hq*2D + 2*Hkv*D) rows into q, gate (T, Hq, D) and k, v (T, Hkv, D); norm + rotate q and k. */
function refPrep(qkv: Float32Array, qNorm: Float32Array, kNorm: Float32Array, invFreq: Float32Array, T: number, pos0: number, d: AttnDims) {
  const { Hq, Hkv, D } = d;
  const W = Hq * 2 * D + 2 * Hkv * D;
  const q = new Float32Array(T * Hq * D), gate = new Float32Array(T * Hq * D);
  const k = new Float32Array(T * Hkv * D), v = new Float32Array(T * Hkv * D);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < Hq; h++) {
      q.set(qkv.subarray(t * W + h * 2 * D, t * W + h * 2 * D + D), (t * Hq + h) * D);
      gate.set(qkv.subarray(t * W + h * 2 * D + D, t * W + (h + 1) * 2 * D), (t * Hq + h) * D);
    }
    k.set(qkv.subarray(t * W + Hq * 2 * D, t * W + Hq * 2 * D + Hkv * D), t * Hkv * D);
    v.set(qkv.subarray(t * W + Hq * 2 * D + Hkv * D, (t + 1) * W), t * Hkv * D);
  }
  const positions = Array.from({ length: T }, (_, t) => pos0 + t);
  const qn = ref.rmsNorm(q, qNorm, D, d.eps), kn = ref.rmsNorm(k, kNorm, D, d.eps);
  ref.applyRope(qn, positions, Hq, D, d.R, invFreq);
  ref.applyRope(kn, positions, Hkv, D, d.R, invFreq);
  return { q: qn, gate, k: kn, v };
}

/** Write (T, Hkv, D) rows into a (Hkv, maxT, D) cache at pos0... */
function refCacheWrite(cache: Float32Array, x: Float32Array, T: number, pos0: number, d: AttnDims) {
  for (let t = 0; t < T; t++) for (let h = 0; h < d.Hkv; h++) {
    cache.set(x.subarray((t * d.Hkv + h) * d.D, (t * d.Hkv + h + 1) * d.D), (h * d.maxT + pos0 + t) * d.D);
  }
}

/** The first Tk positions of a (Hkv, maxT, D) cache as (Hkv, Tk, D). */
function prefix(cache: Float32Array, Tk: number, d: AttnDims): Float32Array {
  const out = new Float32Array(d.Hkv * Tk * d.D);
  for (let h = 0; h < d.Hkv; h++) out.set(cache.subarray(h * d.maxT * d.D, (h * d.maxT + Tk) * d.D), h * Tk * d.D);
  return out;
}

/** softmax(q kᵀ/√D) v ⊙ sigmoid(gate) over the cache prefix, (T, Hq*D). */
function refAttention(q: Float32Array, gate: Float32Array, kc: Float32Array, vc: Float32Array, T: number, pos0: number, d: AttnDims) {
  const Tk = pos0 + T;
  const o = ref.attention(q, prefix(kc, Tk, d), prefix(vc, Tk, d), T, Tk, d.Hq, d.Hkv, d.D, 1 / Math.sqrt(d.D));
  return o.map((x, i) => x * ref.sigmoid(gate[i]));
}

/** GPU buffers of one layer: weights, a cache whose first pos0 positions hold `old` rows and the rest NaN. */
function setup(ctx: GpuContext, d: AttnDims, seed: number, pos0: number) {
  const qNorm = randn(d.D, seed + 1, 0.3), kNorm = randn(d.D, seed + 2, 0.3);
  const invFreq = ref.ropeInvFreq(10000, d.R);
  let kc = new Float32Array(d.Hkv * d.maxT * d.D).fill(NaN), vc = kc.slice();
  const oldK = randn(pos0 * d.Hkv * d.D, seed + 3), oldV = randn(pos0 * d.Hkv * d.D, seed + 4);
  refCacheWrite(kc, oldK, pos0, 0, d);
  refCacheWrite(vc, oldV, pos0, 0, d);
  if (d.halfKv) [kc, vc] = [roundF16(kc), roundF16(vc)];
  const cache = (x: Float32Array, label: string) => ctx.upload(d.halfKv ? packF16(x) : x, label);
  return {
    qNorm, kNorm, invFreq, kc, vc,
    gpu: {
      qNorm: ctx.upload(qNorm, 'q_norm'), kNorm: ctx.upload(kNorm, 'k_norm'), invFreq: ctx.upload(invFreq, 'inv_freq'),
      kCache: cache(kc, 'k_cache'), vCache: cache(vc, 'v_cache'),
    },
  };
}

/** One attention call on the GPU (prep + attention) from qkv rows; returns out (T, Hq*D) and the q, gate buffers. */
async function gpuCall(ctx: GpuContext, device: GPUDevice, l: ReturnType<typeof setup>, qkv: Float32Array, T: number, pos0: number, d: AttnDims, opts?: AttnOptions) {
  const n = T * d.Hq * d.D;
  const q = poisoned(device, n * 4), gate = poisoned(device, n * 4), out = poisoned(device, n * 4);
  const g = l.gpu;
  ctx.run([
    attnPrep(ctx, ctx.upload(qkv, 'qkv'), g.qNorm, g.kNorm, g.invFreq, q, gate, g.kCache, g.vCache, T, pos0, d),
    ...attention(ctx, q, g.kCache, g.vCache, gate, out, T, pos0, d, opts),
  ]);
  return { out: await ctx.readF32(out, n), q: await ctx.readF32(q, n), gate: await ctx.readF32(gate, n) };
}

const qkvWidth = (d: AttnDims) => d.Hq * 2 * d.D + 2 * d.Hkv * d.D;

for (const halfKv of [false, true]) describe(`attention kernels vs reference ops, ${halfKv ? 'f16' : 'f32'} K/V cache`, () => {
  // f16: the reference's keys and values rounded to f16 as stored; a GPU key a rounding step from the reference's
  // may round the other way (1 f16 ulp), and the output follows at that size
  const tol = halfKv ? { k: { rel: 1e-3 }, out: { rel: 1e-3 } } : { k: { rel: 1e-5 }, out: { rel: 2e-5 } };
  // [T, D, R, Hq, Hkv, pos0, splitLen?]: decode, prefill at odd lengths, continuation onto a cache, R = D/2, GQA 2 and 3
  const cases: [number, number, number, number, number, number, number?][] = [
    [1, 32, 8, 4, 2, 0],
    [7, 64, 16, 6, 2, 5],
    [65, 32, 8, 4, 2, 0],
    [130, 64, 32, 6, 2, 0],
    [65, 64, 16, 3, 1, 40],
    [1, 64, 16, 6, 2, 599], // decode at 600 keys: the default split path, 10 splits of 64
    [7, 32, 8, 4, 2, 100, 32], // split path forced with several tokens: splits past a row's causal end
    [3, 32, 8, 6, 2, 1100], // a few tokens against a long cache: split path chosen by default
  ];
  for (const [T, D, R, Hq, Hkv, pos0, splitLen] of cases) {
    const d: AttnDims = { Hq, Hkv, D, R, maxT: pos0 + T + 3, eps: 1e-6, halfKv };
    it(`T=${T} D=${D} R=${R} Hq/Hkv=${Hq}/${Hkv} pos0=${pos0}${splitLen ? ` split=${splitLen}` : ''}`, () =>
      withGpuErrors(async (device) => {
        const ctx = new GpuContext(device);
        const l = setup(ctx, d, T * 10 + D, pos0);
        const qkv = randn(T * qkvWidth(d), T + D);
        const got = await gpuCall(ctx, device, l, qkv, T, pos0, d, splitLen ? { splitLen } : {});

        const want = refPrep(qkv, l.qNorm, l.kNorm, l.invFreq, T, pos0, d);
        refCacheWrite(l.kc, halfKv ? roundF16(want.k) : want.k, T, pos0, d);
        refCacheWrite(l.vc, halfKv ? roundF16(want.v) : want.v, T, pos0, d);
        expectClose('q', got.q, want.q, { rel: 1e-5 });
        expectClose('gate', got.gate, want.gate, { maxAbs: 0 });
        // the whole cache: old rows kept, new rows written, positions past pos0+T still NaN (compared as NaN)
        const kc = await readKv(ctx, l.gpu.kCache, l.kc.length, halfKv), vc = await readKv(ctx, l.gpu.vCache, l.vc.length, halfKv);
        const filled = (x: Float32Array) => prefix(x, pos0 + T, d);
        expectClose('k cache', filled(kc), filled(l.kc), tol.k);
        expectClose('v cache', filled(vc), filled(l.vc), { maxAbs: 0 });
        expect(kc.slice((d.maxT - 3) * D, d.maxT * D).every(Number.isNaN), 'k cache written past pos0+T').toBe(true);
        expectClose('out', got.out, refAttention(want.q, want.gate, l.kc, l.vc, T, pos0, d), tol.out);
      }));
  }

  if (!halfKv) it('RoPE at position 40000 (angles reduced mod 2pi before cos/sin)', () =>
    withGpuErrors(async (device) => {
      const ctx = new GpuContext(device);
      const T = 3, pos0 = 40000;
      const d: AttnDims = { Hq: 2, Hkv: 1, D: 32, R: 16, maxT: pos0 + T, eps: 1e-6 };
      const l = setup(ctx, d, 7, 0);
      const qkv = randn(T * qkvWidth(d), 8);
      const q = poisoned(device, T * d.Hq * d.D * 4), gate = poisoned(device, T * d.Hq * d.D * 4);
      ctx.run([attnPrep(ctx, ctx.upload(qkv, 'qkv'), l.gpu.qNorm, l.gpu.kNorm, l.gpu.invFreq, q, gate, l.gpu.kCache, l.gpu.vCache, T, pos0, d)]);
      const want = refPrep(qkv, l.qNorm, l.kNorm, l.invFreq, T, pos0, d);
      expectClose('q', await ctx.readF32(q, T * d.Hq * d.D), want.q, { rel: 2e-5 });
      expectClose('k', await ctx.readF32(l.gpu.kCache, T * d.D, pos0 * d.D), want.k, { rel: 2e-5 });
    }));

  it('prefill 65 then 3 decode steps == one prefill of 68 (outputs and cache)', () =>
    withGpuErrors(async (device) => {
      const ctx = new GpuContext(device);
      const d: AttnDims = { Hq: 6, Hkv: 2, D: 32, R: 8, maxT: 70, eps: 1e-6, halfKv };
      const W = qkvWidth(d), n = d.Hq * d.D;
      const qkv = randn(68 * W, 3);
      const whole = setup(ctx, d, 1, 0), steps = setup(ctx, d, 1, 0);
      const one = await gpuCall(ctx, device, whole, qkv, 68, 0, d);
      const parts = [await gpuCall(ctx, device, steps, qkv.subarray(0, 65 * W), 65, 0, d)];
      for (let t = 65; t < 68; t++) parts.push(await gpuCall(ctx, device, steps, qkv.subarray(t * W, (t + 1) * W), 1, t, d));
      const joined = new Float32Array(68 * n);
      parts.reduce((at, p) => (joined.set(p.out, at), at + p.out.length), 0);
      expectClose('out', joined, one.out, { rel: 1e-5 });
      for (const c of ['kCache', 'vCache'] as const) {
        const a = prefix(await readKv(ctx, whole.gpu[c], whole.kc.length, halfKv), 68, d), b = prefix(await readKv(ctx, steps.gpu[c], steps.kc.length, halfKv), 68, d);
        expectClose(c, b, a, { maxAbs: c === 'vCache' ? 0 : halfKv ? 2e-3 : 1e-6 });
      }
    }));
});

// ---- HF fixtures: layer-3 attention of tiny (GQA 2) and asym (GQA 3, D 48) ---------------------------------

for (const name of ['tiny', 'asym'] as PresetName[]) {
  const preset = locatePreset(name);
  describe.skipIf(!preset)(`attention vs HF fixture (${name})`, () => {
    it('prefill taps: mixer_in -> projections (CPU) -> prep + attention (GPU) -> o_proj (CPU) == mixer_out; KV cache', () =>
      withGpuErrors(async (device) => {
        const ctx = new GpuContext(device);
        const ckpt = await preset!.openCheckpoint();
        const c = ckpt.config;
        const layer = c.layerTypes.indexOf('full_attention');
        const fullIndex = 0; // first full-attention layer in kv_keys [n_full, Hkv, T, D]
        const taps = preset!.cases('taps')[0];
        const tapped = await preset!.load(taps);
        const prefill = await preset!.load(preset!.case((taps as unknown as { same_input_as: string }).same_input_as));
        const T = taps.seq_len!, H = c.hiddenSize;
        const d: AttnDims = { Hq: c.numAttentionHeads, Hkv: c.numKeyValueHeads, D: c.headDim, R: c.rotaryDim, maxT: T, eps: c.rmsNormEps };
        const W = (n: string) => ckpt.read(`model.layers.${layer}.self_attn.${n}.weight`);
        const x = tapped.get(`L${layer}.mixer_in`)!.data as Float32Array;

        const qg = ref.linear(x, await W('q_proj'), T, H, d.Hq * 2 * d.D);
        const k = ref.linear(x, await W('k_proj'), T, H, d.Hkv * d.D);
        const v = ref.linear(x, await W('v_proj'), T, H, d.Hkv * d.D);
        const qkv = new Float32Array(T * qkvWidth(d));
        for (let t = 0; t < T; t++) {
          const row = t * qkvWidth(d);
          qkv.set(qg.subarray(t * d.Hq * 2 * d.D, (t + 1) * d.Hq * 2 * d.D), row);
          qkv.set(k.subarray(t * d.Hkv * d.D, (t + 1) * d.Hkv * d.D), row + d.Hq * 2 * d.D);
          qkv.set(v.subarray(t * d.Hkv * d.D, (t + 1) * d.Hkv * d.D), row + d.Hq * 2 * d.D + d.Hkv * d.D);
        }
        const n = T * d.Hq * d.D;
        const q = poisoned(device, n * 4), gate = poisoned(device, n * 4), out = poisoned(device, n * 4);
        const kCache = poisoned(device, d.Hkv * T * d.D * 4), vCache = poisoned(device, d.Hkv * T * d.D * 4);
        const invFreq = ctx.upload(ref.ropeInvFreq(c.ropeTheta, c.rotaryDim), 'inv_freq');
        ctx.run([
          attnPrep(ctx, ctx.upload(qkv, 'qkv'), ctx.upload(await W('q_norm'), 'q_norm'), ctx.upload(await W('k_norm'), 'k_norm'),
            invFreq, q, gate, kCache, vCache, T, 0, d),
          ...attention(ctx, q, kCache, vCache, gate, out, T, 0, d),
        ]);
        const mixerOut = ref.linear(await ctx.readF32(out, n), await W('o_proj'), T, d.Hq * d.D, H);
        expectClose('mixer_out', mixerOut, tapped.get(`L${layer}.mixer_out`)!.data, { rel: 2e-4 });
        const size = d.Hkv * T * d.D;
        const kv = (key: string) => (prefill.get(key)!.data as Float32Array).subarray(fullIndex * size, (fullIndex + 1) * size);
        expectClose('kv_keys', await ctx.readF32(kCache, size), kv('kv_keys'), { rel: 2e-4 });
        expectClose('kv_values', await ctx.readF32(vCache, size), kv('kv_values'), { rel: 2e-4 });
      }));
  });
}

// One token's decode in two dispatches (attentionDecode): the queries and the new key normed and rotated inside
// the kernel, K/V written into the cache, flash-decoding over splits, the gate read from the projection. Against the
// CPU reference at positions on both sides of split boundaries (32-key splits), GQA groups of 2, 3 and 8 query
// heads, head_dim 32, 48 (16 lanes a head) and 256 with 64 rotary dims; both reduction builds.
describe('attention decode (attn_decode + combine)', () => {
  const shapes: [AttnDims, number[]][] = [
    [{ Hq: 4, Hkv: 2, D: 32, R: 16, maxT: 200, eps: 1e-6 }, [0, 31, 32, 95, 130]],
    [{ Hq: 6, Hkv: 2, D: 48, R: 48, maxT: 100, eps: 1e-6 }, [5, 64]],
    [{ Hq: 16, Hkv: 2, D: 256, R: 64, maxT: 80, eps: 1e-6 }, [0, 33, 70]],
  ];
  for (const [subgroups, halfKv] of [[true, false], [false, false], [true, true]]) {
    for (const [shape, positions] of shapes) {
      const d = { ...shape, halfKv };
      it(`Hq=${d.Hq} Hkv=${d.Hkv} D=${d.D} R=${d.R} at ${positions.join(', ')}: ${subgroups ? 'subgroup' : 'workgroup'} reductions, ${halfKv ? 'f16' : 'f32'} K/V`, () =>
        withGpuErrors(async (device) => {
          const ctx = new GpuContext(device, { subgroups });
          for (const pos0 of positions) {
            const l = setup(ctx, d, 7 * pos0 + d.D, pos0);
            const qkv = randn(d.Hq * 2 * d.D + 2 * d.Hkv * d.D, pos0 + 3, 2);
            const out = poisoned(device, d.Hq * d.D * 4), g = l.gpu;
            ctx.run(attentionDecode(ctx, ctx.upload(qkv, 'qkv'), g.qNorm, g.kNorm, g.invFreq, g.kCache, g.vCache, out, pos0, d));
            const r = refPrep(qkv, l.qNorm, l.kNorm, l.invFreq, 1, pos0, d);
            const [k, v] = halfKv ? [roundF16(r.k), roundF16(r.v)] : [r.k, r.v];
            refCacheWrite(l.kc, k, 1, pos0, d);
            refCacheWrite(l.vc, v, 1, pos0, d);
            expectClose(`out at ${pos0}`, await ctx.readF32(out, d.Hq * d.D), refAttention(r.q, r.gate, l.kc, l.vc, 1, pos0, d), { rel: halfKv ? 1e-3 : 2e-5 });
            const cached = await readKv(ctx, g.kCache, l.kc.length, halfKv), cachedV = await readKv(ctx, g.vCache, l.kc.length, halfKv);
            const row = (x: Float32Array, h: number) => x.subarray((h * d.maxT + pos0) * d.D, (h * d.maxT + pos0 + 1) * d.D);
            for (let h = 0; h < d.Hkv; h++) {
              expectClose(`k written at ${pos0}`, row(cached, h), k.subarray(h * d.D, (h + 1) * d.D), { rel: halfKv ? 1e-3 : 2e-6 });
              expect(Array.from(row(cachedV, h)), `v written at ${pos0}`).toEqual(Array.from(v.subarray(h * d.D, (h + 1) * d.D)));
            }
          }
        }));
    }
  }
  it('many short splits (4 keys: 33 splits at 130 keys) merge exactly', () =>
    withGpuErrors(async (device) => {
      const ctx = new GpuContext(device), d: AttnDims = { Hq: 4, Hkv: 2, D: 32, R: 16, maxT: 140, eps: 1e-6 }, pos0 = 130;
      const l = setup(ctx, d, 9, pos0), g = l.gpu, out = poisoned(device, d.Hq * d.D * 4);
      const qkv = randn(d.Hq * 2 * d.D + 2 * d.Hkv * d.D, 77, 2);
      ctx.run(attentionDecode(ctx, ctx.upload(qkv, 'qkv'), g.qNorm, g.kNorm, g.invFreq, g.kCache, g.vCache, out, pos0, d, undefined, 4));
      const r = refPrep(qkv, l.qNorm, l.kNorm, l.invFreq, 1, pos0, d);
      refCacheWrite(l.kc, r.k, 1, pos0, d);
      refCacheWrite(l.vc, r.v, 1, pos0, d);
      expectClose('out', await ctx.readF32(out, d.Hq * d.D), refAttention(r.q, r.gate, l.kc, l.vc, 1, pos0, d), { rel: 2e-5 });
    }));
  it('replays at later positions through its updates, across split counts', () =>
    withGpuErrors(async (device) => {
      const ctx = new GpuContext(device), d: AttnDims = { Hq: 4, Hkv: 2, D: 32, R: 16, maxT: 120, eps: 1e-6 };
      const l = setup(ctx, d, 5, 30), qkvBuf = ctx.buffer((d.Hq * 2 * d.D + 2 * d.Hkv * d.D) * 4, 'qkv'), out = poisoned(device, d.Hq * d.D * 4);
      const updates: ((p: number) => void)[] = [], g = l.gpu;
      const ops = attentionDecode(ctx, qkvBuf, g.qNorm, g.kNorm, g.invFreq, g.kCache, g.vCache, out, 30, d, updates);
      for (const pos0 of [30, 31, 32, 33, 64, 65]) {
        const qkv = randn(d.Hq * 2 * d.D + 2 * d.Hkv * d.D, pos0, 2);
        if (pos0 > 33) { // positions skipped: fill the cache on the CPU side and upload it
          const r = refPrep(randn(qkv.length, pos0 + 100), l.qNorm, l.kNorm, l.invFreq, 1, pos0 - 1, d);
          for (let p = 34; p < pos0; p++) { refCacheWrite(l.kc, r.k, 1, p, d); refCacheWrite(l.vc, r.v, 1, p, d); }
          ctx.device.queue.writeBuffer(g.kCache, 0, new Float32Array(l.kc));
          ctx.device.queue.writeBuffer(g.vCache, 0, new Float32Array(l.vc));
        }
        ctx.device.queue.writeBuffer(qkvBuf, 0, new Float32Array(qkv));
        for (const u of updates) u(pos0);
        ctx.run(ops);
        const r = refPrep(qkv, l.qNorm, l.kNorm, l.invFreq, 1, pos0, d);
        refCacheWrite(l.kc, r.k, 1, pos0, d);
        refCacheWrite(l.vc, r.v, 1, pos0, d);
        expectClose(`out at ${pos0}`, await ctx.readF32(out, d.Hq * d.D), refAttention(r.q, r.gate, l.kc, l.vc, 1, pos0, d), { rel: 2e-5 });
      }
    }));
});
