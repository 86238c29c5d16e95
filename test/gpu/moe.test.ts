import { describe, it, expect } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { router, moeDecode, moePrefill, createMoeScratch, type MoeShape, type MoeScratch, type MoeBuffers } from '../../src/kernels/moe.ts';
import { rmsNorm } from '../../src/kernels/norm.ts';
import * as ref from '../../src/reference/ops.ts';
import { packWeight, unpackWeight, packedWords, type WeightFormat } from '../../src/quant/formats.ts';
import { withGpuErrors, poisoned } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/compare.ts';
import { randn, rng } from '../helpers/random.ts';
import { locatePreset, type PresetName } from '../helpers/fixtures.ts';

interface Mlp { gate: Float32Array; up: Float32Array; down: Float32Array } // (I, H), (I, H), (H, I)

/** Experts packed into `slots` slots at a random injective slot table; unused slots are all-ones words (NaN in every format). */
function packExperts(experts: Mlp[], H: number, I: number, format: WeightFormat, slots: number, seed: number) {
  const guWords = packedWords(format, 2 * I, H), dnWords = packedWords(format, H, I);
  const gateUp = new Uint32Array(slots * guWords).fill(0xffffffff), down = new Uint32Array(slots * dnWords).fill(0xffffffff);
  const r = rng(seed), order = Array.from({ length: slots }, (_, i) => i);
  for (let i = slots - 1; i > 0; i--) { const j = Math.floor(r() * (i + 1)); [order[i], order[j]] = [order[j], order[i]]; }
  const slotOf = new Uint32Array(order.slice(0, experts.length));
  const seen: Mlp[] = experts.map((ex, e) => {
    const gu = new Float32Array(2 * I * H);
    gu.set(ex.gate);
    gu.set(ex.up, I * H);
    const pgu = packWeight(gu, 2 * I, H, format), pdn = packWeight(ex.down, H, I, format);
    gateUp.set(pgu, slotOf[e] * guWords);
    down.set(pdn, slotOf[e] * dnWords);
    const deq = unpackWeight(pgu, 2 * I, H, format);
    return { gate: deq.slice(0, I * H), up: deq.slice(I * H), down: unpackWeight(pdn, H, I, format) };
  });
  return { gateUp, down, slotOf, seen };
}

/** CPU MoE block on the dequantized experts: routing from logits (T, E+1), routed sum in j order, gated shared expert last. */
function refMoe(x: Float32Array, logits: Float32Array, shared: Float32Array, experts: Mlp[], T: number, s: MoeShape, normTopk: boolean) {
  const { E, k, H, I } = s;
  const routerLogits = new Float32Array(T * E);
  for (let t = 0; t < T; t++) routerLogits.set(logits.subarray(t * (E + 1), t * (E + 1) + E), t * E);
  const { idx, w } = ref.routeTopK(routerLogits, T, E, k, normTopk);
  const out = new Float32Array(T * H);
  for (let t = 0; t < T; t++) {
    const acc = new Float64Array(H), xt = x.subarray(t * H, (t + 1) * H);
    for (let j = 0; j < k; j++) {
      const ex = experts[idx[t * k + j]], y = ref.swiglu(xt, ex.gate, ex.up, ex.down, 1, H, I);
      for (let n = 0; n < H; n++) acc[n] += w[t * k + j] * y[n];
    }
    const g = ref.sigmoid(logits[t * (E + 1) + E]);
    for (let n = 0; n < H; n++) out[t * H + n] = acc[n] + g * shared[t * H + n];
  }
  return { idx, w, out };
}

/** Scratch filled with all-ones words, so an entry a kernel fails to write shows up (NaN or a wild index). */
function poisonedScratch(ctx: GpuContext, T: number, s: MoeShape): MoeScratch {
  const scratch = createMoeScratch(ctx, T, s);
  for (const b of [scratch.h, scratch.y, scratch.blocks, scratch.base, scratch.rank, scratch.sorted, scratch.tiles]) {
    ctx.device.queue.writeBuffer(b, 0, new Uint32Array(b.size / 4).fill(0xffffffff));
  }
  return scratch;
}

/** Router, then the decode path and (unless decodeOnly) the prefill path on the same routing. */
async function runGpu(ctx: GpuContext, T: number, s: MoeShape, normTopk: boolean, data: { x: Float32Array; logits: Float32Array; shared: Float32Array; gateUp: Uint32Array; down: Uint32Array; slotOf: Uint32Array }, decodeOnly = false, team?: number) {
  const dev = ctx.device, { k, H } = s;
  const idx = poisoned(dev, T * k * 4), w = poisoned(dev, T * k * 4);
  const outDecode = poisoned(dev, T * H * 4), outPrefill = poisoned(dev, T * H * 4);
  const common = {
    x: ctx.upload(data.x, 'x'), logits: ctx.upload(data.logits, 'logits'), idx, w, slotOf: ctx.upload(data.slotOf, 'slotOf'),
    gateUp: ctx.upload(data.gateUp, 'gateUp'), down: ctx.upload(data.down, 'down'), shared: ctx.upload(data.shared, 'shared'),
  };
  const b = (out: GPUBuffer): MoeBuffers => ({ ...common, out });
  ctx.run([
    router(ctx, common.logits, idx, w, T, { E: s.E, k, normTopk }),
    ...moeDecode(ctx, b(outDecode), T, s, poisonedScratch(ctx, T, s), { team }),
    ...(decodeOnly ? [] : moePrefill(ctx, b(outPrefill), T, s, poisonedScratch(ctx, T, s))),
  ]);
  return {
    idx: new Uint32Array(await ctx.read(idx, T * k * 4)),
    w: await ctx.readF32(w, T * k),
    decode: await ctx.readF32(outDecode, T * H),
    prefill: await ctx.readF32(outPrefill, T * H),
  };
}

// One context for the file: SwiftShader compiles a pipeline in seconds, and the cases below share shapes. Its prefill
// GEMMs are the f32 ones (exact to the dequantized weights); the int8 ones have their own cases below.
let sharedCtx: GpuContext | undefined;
const context = (device: GPUDevice) => (sharedCtx ??= new GpuContext(device, { int8Matmul: false }));

/** refMoe's routed sum as the int8 GEMMs compute it: x and each h quantized per group of 32 (ref.linearInt8Q4). */
function refMoeInt8(x: Float32Array, idx: Uint32Array, w: Float32Array, logits: Float32Array, shared: Float32Array, packed: { gateUp: Uint32Array; down: Uint32Array; slotOf: Uint32Array }, T: number, s: MoeShape) {
  const { E, k, H, I } = s, guWords = packedWords('q4', 2 * I, H), dnWords = packedWords('q4', H, I), out = new Float32Array(T * H);
  for (let t = 0; t < T; t++) {
    const acc = new Float64Array(H), xt = x.subarray(t * H, (t + 1) * H);
    for (let j = 0; j < k; j++) {
      const slot = packed.slotOf[idx[t * k + j]];
      const gu = ref.linearInt8Q4(xt, packed.gateUp.subarray(slot * guWords, (slot + 1) * guWords), 1, H, 2 * I);
      const h = Float32Array.from({ length: I }, (_, u) => ref.silu(gu[u]) * gu[I + u]);
      const y = ref.linearInt8Q4(h, packed.down.subarray(slot * dnWords, (slot + 1) * dnWords), 1, I, H);
      for (let n = 0; n < H; n++) acc[n] += w[t * k + j] * y[n];
    }
    const g = ref.sigmoid(logits[t * (E + 1) + E]);
    for (let n = 0; n < H; n++) out[t * H + n] = acc[n] + g * shared[t * H + n];
  }
  return out;
}

const randomMlp = (H: number, I: number, seed: number): Mlp => ({
  gate: randn(I * H, seed, 0.2), up: randn(I * H, seed + 1, 0.2), down: randn(H * I, seed + 2, 0.2),
});

describe('MoE router', () => {
  // spread: the logits' scale; at 40 most probabilities underflow to 0, so the tail of the top-k ties at 0
  const cases: [number, number, number, boolean, number][] = [[16, 4, 1, true, 2], [64, 10, 7, false, 2], [512, 10, 65, true, 2], [64, 4, 65, false, 2], [512, 10, 9, true, 40]];
  for (const [E, k, T, normTopk, spread] of cases) {
    it(`E=${E} k=${k} T=${T} normTopk=${normTopk} spread=${spread}`, () =>
      withGpuErrors(async (device) => {
        const ctx = context(device);
        const logits = randn(T * (E + 1), E + k + T, spread);
        const routerLogits = new Float32Array(T * E);
        for (let t = 0; t < T; t++) routerLogits.set(logits.subarray(t * (E + 1), t * (E + 1) + E), t * E);
        const want = ref.routeTopK(routerLogits, T, E, k, normTopk);
        const idx = poisoned(device, T * k * 4), w = poisoned(device, T * k * 4);
        ctx.run([router(ctx, ctx.upload(logits, 'logits'), idx, w, T, { E, k, normTopk })]);
        expect(Array.from(new Uint32Array(await ctx.read(idx, T * k * 4)))).toEqual(Array.from(want.idx));
        expectClose('router w', await ctx.readF32(w, T * k), want.w, { rel: 2e-6 });
      }));
  }
  it('both reduction builds pick the same experts: subgroups (team 4 on SwiftShader) and workgroup memory', () =>
    withGpuErrors(async (device) => {
      const E = 512, k = 10, T = 9;
      const logits = randn(T * (E + 1), 77, 3);
      const routerLogits = new Float32Array(T * E);
      for (let t = 0; t < T; t++) routerLogits.set(logits.subarray(t * (E + 1), t * (E + 1) + E), t * E);
      const want = ref.routeTopK(routerLogits, T, E, k, true);
      for (const ctx of [new GpuContext(device), new GpuContext(device, { subgroups: false })]) {
        const idx = poisoned(device, T * k * 4), w = poisoned(device, T * k * 4);
        ctx.run([router(ctx, ctx.upload(logits, 'logits'), idx, w, T, { E, k, normTopk: true, team: 4 })]);
        expect(Array.from(new Uint32Array(await ctx.read(idx, T * k * 4)))).toEqual(Array.from(want.idx));
        expectClose('router w', await ctx.readF32(w, T * k), want.w, { rel: 2e-6 });
      }
    }));
  it('equal logits everywhere: ties in index order', () =>
    withGpuErrors(async (device) => {
      const ctx = context(device);
      const E = 300, k = 10, T = 2;
      const logits = new Float32Array(T * (E + 1)).fill(0.5);
      const idx = poisoned(device, T * k * 4), w = poisoned(device, T * k * 4);
      ctx.run([router(ctx, ctx.upload(logits, 'logits'), idx, w, T, { E, k, normTopk: true })]);
      const first = Array.from({ length: k }, (_, j) => j);
      expect(Array.from(new Uint32Array(await ctx.read(idx, T * k * 4)))).toEqual([...first, ...first]);
      expectClose('w', await ctx.readF32(w, T * k), new Float32Array(T * k).fill(1 / k), { rel: 1e-6 });
    }));
  it('exact ties go to the lower expert index', () =>
    withGpuErrors(async (device) => {
      const ctx = context(device);
      const E = 512, k = 10, T = 7; // E > threads: each thread scans several experts
      const logits = randn(T * (E + 1), 5).map((v) => Math.round(v)); // a handful of distinct values: many ties
      const routerLogits = new Float32Array(T * E);
      for (let t = 0; t < T; t++) routerLogits.set(logits.subarray(t * (E + 1), t * (E + 1) + E), t * E);
      const want = ref.routeTopK(routerLogits, T, E, k, true);
      const idx = poisoned(device, T * k * 4), w = poisoned(device, T * k * 4);
      ctx.run([router(ctx, ctx.upload(logits, 'logits'), idx, w, T, { E, k, normTopk: true })]);
      expect(Array.from(new Uint32Array(await ctx.read(idx, T * k * 4)))).toEqual(Array.from(want.idx));
    }));
});

describe('MoE experts (decode GEMVs and prefill GEMMs) against the CPU reference', () => {
  // [E, k, T, H, I, format, slots, normTopk, skew, decodeOnly]. skew biases two experts so their lists span
  // several GEMM tiles. Shapes are shared where possible (pipelines compile slowly on SwiftShader): the f32 one
  // matches the tiny fixture's expert shape, the asym fixture adds f32 with H = 48 and I = 20 (partial chunks),
  // and H = 80, I = 40 give several GEMM column tiles with partial groups. q8/f16 reuse load_w8 of the GEMMs,
  // so they run the decode path only (q8 with H = 160: more groups than half a GEMV team, so every lane of the
  // team reduction counts; f16 with I = 20: a partial chunk at a row end, next to poisoned slots). The GEMV team
  // (lanes per dot product) follows K: these shapes give 1, 2, 4 and 8; the last case forces 8 on short rows.
  const cases: [number, number, number, number, number, WeightFormat, number, boolean, boolean, boolean, number?][] = [
    [64, 4, 1, 64, 16, 'f32', 64, true, false, false],
    [64, 4, 65, 64, 16, 'f32', 80, false, true, false],
    [64, 10, 7, 80, 40, 'q4', 70, false, false, false],
    [64, 10, 65, 80, 40, 'q4', 64, true, true, false],
    [16, 4, 7, 160, 40, 'q8', 19, true, false, true],
    [16, 4, 7, 48, 20, 'f16', 32, false, false, true],
    [64, 10, 7, 80, 40, 'q4', 70, false, false, true, 8],
  ];
  for (const [E, k, T, H, I, format, slots, normTopk, skew, decodeOnly, team] of cases) {
    it(`E=${E} k=${k} T=${T} H=${H} I=${I} ${format} slots=${slots} normTopk=${normTopk}${skew ? ' skewed' : ''}${decodeOnly ? ' (decode path)' : ''}${team ? ` team=${team}` : ''}`, () =>
      withGpuErrors(async (device) => {
        const ctx = context(device);
        const s: MoeShape = { E, k, H, I, format };
        const seed = E * 1000 + T * 10 + I;
        const x = randn(T * H, seed), shared = randn(T * H, seed + 1), logits = randn(T * (E + 1), seed + 2);
        if (skew) for (let t = 0; t < T; t++) { logits[t * (E + 1) + 3] += 4; logits[t * (E + 1) + 11] += 4; }
        const packed = packExperts(Array.from({ length: E }, (_, e) => randomMlp(H, I, seed + 10 + 3 * e)), H, I, format, slots, seed);
        const want = refMoe(x, logits, shared, packed.seen, T, s, normTopk);
        const got = await runGpu(ctx, T, s, normTopk, { x, logits, shared, ...packed }, decodeOnly, team);
        expect(Array.from(got.idx)).toEqual(Array.from(want.idx));
        expectClose('w', got.w, want.w, { rel: 2e-6 });
        expectClose('decode', got.decode, want.out, { rel: 1e-5 });
        if (decodeOnly) return;
        expectClose('prefill', got.prefill, want.out, { rel: 1e-5 });
        expectClose('prefill vs decode', got.prefill, got.decode, { rel: 1e-6 });
      }));
  }

  // The prefill GEMMs on int8 activations (moe_int8.wgsl): against the emulation of their arithmetic, and against the
  // exact block within the error int8 activations cost. The skewed case spans several tiles of one expert; H = 80
  // and I = 40 leave partial groups and column tiles; 7 slots of poison sit between the used ones.
  for (const [T, skew] of [[7, false], [65, true]] as const) {
    it(`int8 prefill GEMMs: E=64 k=10 T=${T} H=80 I=40 q4${skew ? ' skewed' : ''}`, () =>
      withGpuErrors(async (device) => {
        const ctx = new GpuContext(device), E = 64, k = 10, H = 80, I = 40, s: MoeShape = { E, k, H, I, format: 'q4' };
        if (!ctx.int8Matmul) throw new Error('this WebGPU has no packed_4x8_integer_dot_product: the int8 path is untested');
        const seed = 77 + T;
        const x = randn(T * H, seed), shared = randn(T * H, seed + 1), logits = randn(T * (E + 1), seed + 2);
        if (skew) for (let t = 0; t < T; t++) { logits[t * (E + 1) + 3] += 4; logits[t * (E + 1) + 11] += 4; }
        const packed = packExperts(Array.from({ length: E }, (_, e) => randomMlp(H, I, seed + 10 + 3 * e)), H, I, 'q4', 71, seed);
        const want = refMoe(x, logits, shared, packed.seen, T, s, true);
        const got = await runGpu(ctx, T, s, true, { x, logits, shared, ...packed });
        expectClose('decode (f32 GEMVs)', got.decode, want.out, { rel: 1e-5 });
        expectClose('int8 prefill vs its emulation', got.prefill, refMoeInt8(x, got.idx, got.w, logits, shared, packed, T, s), { rel: 1e-3 });
        const d = expectClose('int8 prefill vs exact', got.prefill, want.out, { rel: 3e-2 });
        expect(d.cos).toBeGreaterThan(0.9995);
      }));
  }
});

// Where the shared expert has an expert's shape (Is = I, as in the 80B model) it can sit in an expert slot and
// run in decode's GEMVs as one more pair a token, its output summed with weight sigmoid(logits[:, E]); the dense
// shared output buffer is poisoned here, so reading it would show.
describe('MoE decode with the shared expert as one more pair', () => {
  const cases = [[1, 'q4', undefined, undefined, undefined], [5, 'q4', undefined, { wg: 256, groups: 2 }, { wg: 128, groups: 4 }], [3, 'f32', 8, undefined, undefined]] as const;
  for (const [T, format, team, gateUp, down] of cases) {
    it(`E=64 k=10 T=${T} H=80 I=40 ${format}${team ? ` team=${team}` : ''}${gateUp ? ` gate/up ${JSON.stringify(gateUp)} down ${JSON.stringify(down)}` : ''}`, () =>
      withGpuErrors(async (device) => {
        const ctx = context(device);
        const E = 64, k = 10, H = 80, I = 40, s: MoeShape = { E, k, H, I, format };
        const x = randn(T * H, 900 + T), logits = randn(T * (E + 1), 901 + T);
        const packed = packExperts(Array.from({ length: E + 1 }, (_, e) => randomMlp(H, I, 1000 + 3 * e)), H, I, format, E + 6, 902 + T);
        const sh = packed.seen[E], sharedOut = new Float32Array(T * H);
        for (let t = 0; t < T; t++) sharedOut.set(ref.swiglu(x.subarray(t * H, (t + 1) * H), sh.gate, sh.up, sh.down, 1, H, I), t * H);
        const want = refMoe(x, logits, sharedOut, packed.seen.slice(0, E), T, s, true);
        const idx = poisoned(device, T * k * 4), w = poisoned(device, T * k * 4), out = poisoned(device, T * H * 4);
        const b: MoeBuffers = {
          x: ctx.upload(x, 'x'), logits: ctx.upload(logits, 'logits'), idx, w, slotOf: ctx.upload(packed.slotOf, 'slotOf'),
          gateUp: ctx.upload(packed.gateUp, 'gateUp'), down: ctx.upload(packed.down, 'down'), shared: poisoned(device, T * H * 4), out,
        };
        ctx.run([router(ctx, b.logits, idx, w, T, { E, k, normTopk: true }), ...moeDecode(ctx, b, T, s, poisonedScratch(ctx, T, s), { team, gateUp, down, sharedSlot: packed.slotOf[E] })]);
        expect(Array.from(new Uint32Array(await ctx.read(idx, T * k * 4)))).toEqual(Array.from(want.idx));
        expectClose('decode with the shared pair', await ctx.readF32(out, T * H), want.out, { rel: 1e-5 });
      }));
  }
});

describe('MoE block against the HF fixtures (f32 weights)', () => {
  for (const name of ['tiny', 'asym'] as PresetName[]) {
    const preset = locatePreset(name);
    it.skipIf(!preset)(`${name}: routing and moe_out of every layer`, () =>
      withGpuErrors(async (device) => {
        const ctx = context(device);
        const cfg = preset!.manifest.runtime_config as Record<string, number | boolean>;
        const L = cfg.num_hidden_layers as number, H = cfg.hidden_size as number, E = cfg.num_experts as number;
        const k = cfg.num_experts_per_tok as number, I = cfg.moe_intermediate_size as number, Is = cfg.shared_expert_intermediate_size as number;
        const normTopk = cfg.norm_topk_prob as boolean;
        const tapsCase = preset!.cases('taps')[0];
        const taps = await preset!.load(tapsCase);
        const routing = await preset!.load(preset!.case((tapsCase as unknown as { same_input_as: string }).same_input_as));
        const T = tapsCase.seq_len!;
        const ckpt = await preset!.openCheckpoint();
        const s: MoeShape = { E, k, H, I, format: 'f32' };
        for (let l = 0; l < L; l++) {
          const pre = `model.layers.${l}.mlp`;
          const x = taps.get(`L${l}.moe_in`)!.data as Float32Array;
          const gateW = new Float32Array((E + 1) * H);
          gateW.set(await ckpt.read(`${pre}.gate.weight`, [E, H]));
          gateW.set(await ckpt.read(`${pre}.shared_expert_gate.weight`, [1, H]), E * H);
          const logits = ref.linear(x, gateW, T, H, E + 1);
          const sh = (p: string, shape: number[]) => ckpt.read(`${pre}.shared_expert.${p}.weight`, shape);
          const shared = ref.swiglu(x, await sh('gate_proj', [Is, H]), await sh('up_proj', [Is, H]), await sh('down_proj', [H, Is]), T, H, Is);
          const experts: Mlp[] = [];
          for (let e = 0; e < E; e++) {
            const ex = (p: string, shape: number[]) => ckpt.read(`${pre}.experts.${e}.${p}.weight`, shape);
            experts.push({ gate: await ex('gate_proj', [I, H]), up: await ex('up_proj', [I, H]), down: await ex('down_proj', [H, I]) });
          }
          const packed = packExperts(experts, H, I, 'f32', E + 3, 100 + l);
          const got = await runGpu(ctx, T, s, normTopk, { x, logits, shared, ...packed });
          const wantIdx = (routing.get('router_topk_idx')!.data as Int32Array).subarray(l * T * k, (l + 1) * T * k);
          const wantW = (routing.get('router_topk_w')!.data as Float32Array).subarray(l * T * k, (l + 1) * T * k);
          expect(Array.from(got.idx), `L${l} routing`).toEqual(Array.from(wantIdx));
          expectClose(`L${l} router w`, got.w, wantW, { rel: 1e-5 });
          const want = taps.get(`L${l}.moe_out`)!.data as Float32Array;
          expectClose(`L${l} moe_out (prefill)`, got.prefill, want, { rel: 2e-4 });
          expectClose(`L${l} moe_out (decode)`, got.decode, want, { rel: 2e-4 });
        }
      }));
  }
});

// Decode fuses the router's top-k and the post-attention norm into the gate/up GEMV of each token (moeDecode's
// `route`; one token, or the 2-3 of a verify step): against router -> rmsNorm -> the plain decode path, with k above
// one chunk of pairs (13 + shared), and with a unit's pairs split over teams (2 groups of 7 pairs: two chunks, the
// second short; 4 groups of 1).
describe('MoE decode routing and norming its own tokens', () => {
  const cases = [[64, 10, 80, 40, 'q4', true, undefined, undefined, 1], [40, 13, 48, 20, 'f32', true, { wg: 256, groups: 2 }, { wg: 256, groups: 4 }, 3],
    [16, 4, 64, 16, 'q8', false, { wg: 128, groups: 4 }, { wg: 128, groups: 2 }, 2]] as const;
  for (const [E, k, H, I, format, shared, gateUp, down, T] of cases) {
    for (const subgroups of [true, false]) {
      it(`E=${E} k=${k} H=${H} I=${I} ${format}${shared ? ' +shared pair' : ''}${gateUp ? ` gate/up ${JSON.stringify(gateUp)} down ${JSON.stringify(down)}` : ''}, T=${T}, ${subgroups ? 'subgroup' : 'workgroup'} reductions`, () =>
        withGpuErrors(async (device) => {
          const ctx = new GpuContext(device, { subgroups });
          const s: MoeShape = { E, k, H, I, format }, team = 4;
          const a = randn(T * H, 31, 2), norm = randn(H, 32, 0.3), logits = randn(T * (E + 1), 33, 2);
          const packed = packExperts(Array.from({ length: E + 1 }, (_, e) => randomMlp(H, I, 2000 + 3 * e)), H, I, format, E + 5, 34);
          const sharedSlot = shared ? packed.slotOf[E] : undefined;
          const xn = poisoned(device, T * H * 4);
          const common = {
            logits: ctx.upload(logits, 'logits'), slotOf: ctx.upload(packed.slotOf, 'slotOf'), gateUp: ctx.upload(packed.gateUp, 'gateUp'),
            down: ctx.upload(packed.down, 'down'), shared: ctx.upload(randn(T * H, 35), 'shared'),
          };
          const rows = (n: number) => poisoned(device, T * n * 4);
          const fused = { ...common, x: ctx.upload(a, 'a'), idx: rows(k), w: rows(k), out: rows(H) };
          const plain = { ...common, x: xn, idx: rows(k), w: rows(k), out: rows(H) };
          ctx.run([
            ...moeDecode(ctx, fused, T, s, poisonedScratch(ctx, T, s), { team, gateUp, down, sharedSlot, route: { norm: ctx.upload(norm, 'norm'), eps: 1e-6, normTopk: true } }),
            router(ctx, common.logits, plain.idx, plain.w, T, { E, k, normTopk: true }),
            rmsNorm(ctx, fused.x, ctx.upload(norm, 'norm'), xn, T, H, 1e-6),
            ...moeDecode(ctx, plain, T, s, poisonedScratch(ctx, T, s), { team, sharedSlot }),
          ]);
          expect(Array.from(new Uint32Array(await ctx.read(fused.idx, T * k * 4)))).toEqual(Array.from(new Uint32Array(await ctx.read(plain.idx, T * k * 4))));
          expectClose('w', await ctx.readF32(fused.w, T * k), await ctx.readF32(plain.w, T * k), { rel: 1e-6 });
          expectClose('out', await ctx.readF32(fused.out, T * H), await ctx.readF32(plain.out, T * H), { rel: 2e-5 });
        }));
    }
  }
});
