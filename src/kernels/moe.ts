// Sparse MoE kernels (REFERENCE.md §5): router top-k and the prefill counting sort by expert
// (shaders/moe_route.wgsl), the routed experts for decode (GEMVs per (token, j) pair) and prefill (per-expert
// GEMMs), and the combine with the sigmoid-gated shared expert (shaders/moe.wgsl). Nothing is read back: every
// dispatch size follows from T on the CPU.
import { type GpuContext, type Op, type Binding, ceilDiv } from '../gpu/context.ts';
import { grid } from './grid.ts';
import { quantizeRows } from './matmul.ts';
import { FORMAT_ID, packedWords, type WeightFormat } from '../quant/formats.ts';

const SHADER = 'moe.wgsl';
const ROUTE = 'moe_route.wgsl';
const INT8 = 'moe_int8.wgsl'; // its tiles hold TM = 32 list entries too (16 thread rows of 2)
const WG = 256; // threads of the expert kernels (the decode gate/up: GateUpTuning)

/**
 * The decode gate/up GEMV's workgroups: `wg` threads in teams of TEAM lanes, `groups` teams a unit (each over a
 * group of the token's pairs), so a token's gate/up is I / (wg / TEAM / groups) workgroups, each routing and norming
 * the token once.
 */
export interface GateUpTuning { wg: number; groups: number }

/**
 * The gate/up's workgroups on this device: the more threads share one routing and norm the better (H100, 80B shape,
 * L2-cold: 128 threads x 1 group 44 us, 256 x 2 33 us, 512 x 4 28 us; BENCHMARKS.md), up to the device's limit.
 */
export function gateUpTuning(ctx: GpuContext): GateUpTuning {
  return ctx.device.limits.maxComputeInvocationsPerWorkgroup >= 512 ? { wg: 512, groups: 4 } : { wg: 256, groups: 2 };
}

/**
 * The down + combine GEMV's workgroups on this device (the same shape of tuning: threads, pair groups). H100, 80B
 * shape, L2-cold: 256 threads x 1 group 19.1 us, 512 x 2 17.5, 256 x 2 19.4, 512 x 4 22.5, 1024 x 4 23.3.
 */
export function downTuning(ctx: GpuContext): GateUpTuning {
  return ctx.device.limits.maxComputeInvocationsPerWorkgroup >= 512 ? { wg: 512, groups: 2 } : { wg: 256, groups: 1 };
}

/** Weights per 16-byte unit (shaders/quant.wgsl): the decode GEMV lanes stride over units of a row. */
const UNIT_WEIGHTS: Record<WeightFormat, number> = { f32: 4, f16: 8, q4: 32, q8: 16 };

/** GEMV lanes a row over K (a power of two, 4..32): about a unit each on short rows, 32 on the real model's. */
const gemvTeam = (K: number, format: WeightFormat) => Math.min(32, Math.max(4, 2 ** Math.ceil(Math.log2(ceilDiv(K, UNIT_WEIGHTS[format])))));
const BLOCK = 64; // tokens per counting-sort block
const TM = 32; // list entries per GEMM tile
const TN = 64; // weight rows per GEMM tile

export interface RouterShape {
  E: number; // routed experts
  k: number; // experts per token
  normTopk: boolean; // norm_topk_prob
  team?: number; // reduction team (tests: 4 runs the subgroup build on SwiftShader)
  wg?: number; // threads (default 256; at least 128, topk.wgsl's bins)
}

/**
 * The router shape of moeDecode's fused routing: a router() call with it sums the softmax in the same order as the
 * gate/up GEMV that routes its token itself, so a step that routes first (streaming) gets the same weights bit for bit.
 */
export function fusedRouteShape(ctx: GpuContext, s: MoeShape, normTopk: boolean): RouterShape {
  return { E: s.E, k: s.k, normTopk, wg: gateUpTuning(ctx).wg, team: gemvTeam(s.H, s.format) };
}

export interface MoeShape {
  E: number;
  k: number;
  H: number; // hidden size
  I: number; // moe_intermediate_size
  format: WeightFormat; // of the routed expert slots
}

/** The buffers of one MoE block call. Slot buffers: gateUp = slots × packed (2I, H) with rows [gate; up], down = slots × packed (H, I). */
export interface MoeBuffers {
  x: Binding; // (T, H) post_attention_layernorm output
  logits: Binding; // (T, E+1): router logits | shared_expert_gate logit
  idx: Binding; // (T, k) u32, from router()
  w: Binding; // (T, k) f32, from router()
  slotOf: Binding; // (E) u32: expert -> slot
  gateUp: Binding; // (slots, packedWords(format, 2I, H)) u32
  down: Binding; // (slots, packedWords(format, H, I)) u32
  shared: Binding; // (T, H) shared expert output (before its sigmoid gate)
  out: Binding; // (T, H) MoE block output
}

/**
 * Working buffers for calls of up to maxT tokens; one set serves every layer. y dominates: maxT·k·H·4 bytes
 * (168 MB at maxT 2048 on the real model, over WebGPU's default 128 MiB binding limit), so chunk long prefills.
 */
export interface MoeScratch {
  maxT: number;
  h: GPUBuffer; // (maxT·(k+1), I) f32: expert hidden rows (decode: pair order t·PAIRS + j; prefill: grouped by expert)
  y: GPUBuffer; // (maxT, k, H) f32: each pair's expert output before the weighted sum
  blocks: GPUBuffer; // (ceil(maxT/64), E) u32: pairs of each expert in each block of 64 tokens
  base: GPUBuffer; // (ceil(maxT/64), E) u32: list position of each block's first pair of each expert
  rank: GPUBuffer; // (maxT, k) u32: rank of each pair inside its block's group
  sorted: GPUBuffer; // (maxT·k) u32: pair ids grouped by expert, token order inside a group
  tiles: GPUBuffer; // (maxTiles, 4) u32: (expert, first list entry, entries, 0)
}

/** Upper bound on GEMM tiles: each expert's list is cut into ceil(count / TM) tiles. */
export const maxTiles = (T: number, k: number, E: number) => ceilDiv(T * k, TM) + Math.min(E, T * k);

export function createMoeScratch(ctx: GpuContext, maxT: number, s: MoeShape): MoeScratch {
  const pairs = maxT * s.k;
  return {
    maxT,
    h: ctx.buffer((pairs + maxT) * s.I * 4, 'moe.h'), // + the shared expert's row a token when it runs as a pair
    y: ctx.buffer(pairs * s.H * 4, 'moe.y'),
    blocks: ctx.buffer(ceilDiv(maxT, BLOCK) * s.E * 4, 'moe.blocks'),
    base: ctx.buffer(ceilDiv(maxT, BLOCK) * s.E * 4, 'moe.base'),
    rank: ctx.buffer(pairs * 4, 'moe.rank'),
    sorted: ctx.buffer(pairs * 4, 'moe.sorted'),
    tiles: ctx.buffer(maxTiles(maxT, s.k, s.E) * 16, 'moe.tiles'),
  };
}

const params = (ctx: GpuContext, T: number, tiles = 0) => ctx.uniform(new Uint32Array([T, tiles, 0, 0]));

// Override constants per kernel: only those it reads, so layers of one model share pipelines.
const formatConstants = (s: MoeShape) => ({ H: s.H, I: s.I, FORMAT: FORMAT_ID[s.format] });
const gateUpConstants = (s: MoeShape) => ({ ...formatConstants(s), TOPK: s.k, GU_WORDS: packedWords(s.format, 2 * s.I, s.H) });
const downConstants = (s: MoeShape) => ({ ...formatConstants(s), DN_WORDS: packedWords(s.format, s.H, s.I) });

/** idx/w (T, k) = top-k of softmax(logits[:, :E]) by descending probability, renormalised when normTopk. */
export function router(ctx: GpuContext, logits: Binding, idx: Binding, w: Binding, T: number, s: RouterShape): Op {
  const c = { E: s.E, TOPK: s.k, NORM_TOPK: s.normTopk ? 1 : 0, WG: s.wg ?? WG, TEAM: s.team ?? 32 };
  return ctx.op(`moe.router(${T}x${s.E} top${s.k})`, ROUTE, 'router_topk', c, [params(ctx, T), idx, w, logits], grid(T));
}

/** out = Σ_j w_j·y_j + sigmoid(logits[:, E])·shared, from per-pair expert outputs y (T, k, H). */
function combine(ctx: GpuContext, b: MoeBuffers, y: Binding, T: number, s: MoeShape): Op {
  const c = { E: s.E, TOPK: s.k, H: s.H };
  return ctx.op(`moe.combine(${T}x${s.H})`, SHADER, 'moe_combine', c, [params(ctx, T), y, b.w, b.logits, b.shared, b.out], grid(ceilDiv(T * s.H, WG)));
}

/**
 * Decode's own input norm and routing: the gate/up GEMV of one token norms x itself (b.x is then the residual stream
 * a_l, not the normed input) and routes the token (topk.wgsl, writing b.idx and b.w), unless `routed` says b.idx and
 * b.w already hold its routing (a streaming step, which read it back before making the experts resident).
 */
export interface MoeRoute {
  norm: Binding; // (H) post_attention_layernorm
  eps: number;
  normTopk: boolean;
  routed?: boolean;
}

/**
 * Decode path (few tokens): gate/up GEMVs into h, then the down GEMVs fused with the combine (two dispatches).
 * Weights are read once per pair. `sharedSlot`: the shared expert's weights sit in that slot (gpu-weights.ts
 * sharedExpertSlot) and run as one more pair of each token, its output summed with weight sigmoid(logits[:, E])
 * (b.shared is then not read). `route`: the gate/up GEMV also routes each token from b.logits (writing b.idx and b.w
 * for the down GEMVs) and norms b.x, so neither the router's top-k nor the norm is a dispatch of its own.
 * `team` overrides the lanes a row of both GEMVs (tests), `gateUp` and `down` their workgroups (threads, pair groups;
 * bench/ablate.ts; a gate/up `wg` other than the default's sums the routing softmax in another order than
 * fusedRouteShape).
 */
export function moeDecode(ctx: GpuContext, b: MoeBuffers, T: number, s: MoeShape, scratch: MoeScratch,
  opts: { team?: number; sharedSlot?: number; route?: MoeRoute; gateUp?: GateUpTuning; down?: GateUpTuning } = {}): Op[] {
  checkT(T, scratch);
  const kk = s.k + (opts.sharedSlot === undefined ? 0 : 1), pairs = T * kk, P = params(ctx, T);
  const guTeam = opts.team ?? gemvTeam(s.H, s.format), dnTeam = opts.team ?? gemvTeam(s.I, s.format);
  const shared: Record<string, number> = opts.sharedSlot === undefined ? {} : { SHARED_SLOT: opts.sharedSlot };
  const label = `${T}x${s.k}${opts.sharedSlot === undefined ? '' : '+shared'}`;
  const gu = packedWords(s.format, 2 * s.I, s.H) * 4, dn = packedWords(s.format, s.H, s.I) * 4;
  const g = opts.gateUp ?? gateUpTuning(ctx), guUnits = g.wg / guTeam / g.groups;
  const d = opts.down ?? downTuning(ctx), dnRows = d.wg / dnTeam / d.groups;
  for (const [what, t, per] of [['gate/up', g, guUnits], ['down', d, dnRows]] as const) {
    if (!Number.isInteger(per) || per < 1) throw new RangeError(`moeDecode: bad ${what} tuning ${JSON.stringify(t)} for teams of ${what === 'down' ? dnTeam : guTeam}`);
  }
  const guTiles = ceilDiv(s.I, guUnits), guc = { ...gateUpConstants(s), ...shared, WG: g.wg, TEAM: guTeam, PAIR_GROUPS: g.groups };
  const r = opts.route;
  const gateUp = !r ? ctx.op(`moe.gate_up_gemv(${label})`, SHADER, 'moe_gate_up_gemv', guc, [P, b.x, b.gateUp, b.slotOf, b.idx, scratch.h], grid(T * guTiles))
    : r.routed ? ctx.op(`moe.gate_up_gemv(${label}) rmsnorm`, SHADER, 'moe_gate_up_gemv_normed', { ...guc, EPS: r.eps },
      [P, b.x, b.gateUp, b.slotOf, b.idx, scratch.h, r.norm], grid(T * guTiles))
    : ctx.op(`moe.gate_up_gemv(${label}) routed+rmsnorm`, SHADER, 'moe_gate_up_gemv_fused', { ...guc, E: s.E, NORM_TOPK: r.normTopk ? 1 : 0, EPS: r.eps },
      [P, b.x, b.gateUp, b.slotOf, undefined, scratch.h, r.norm, b.logits, b.idx, b.w], grid(T * guTiles));
  return [
    { bytes: pairs * gu, ...gateUp },
    { bytes: pairs * dn, ...ctx.op(`moe.down_combine_gemv(${label})`, SHADER, 'moe_down_combine_gemv', { ...downConstants(s), E: s.E, TOPK: s.k, WG: d.wg, TEAM: dnTeam, PAIR_GROUPS: d.groups, ...shared },
      [P, scratch.h, b.down, b.slotOf, b.idx, b.out, b.w, b.logits, b.shared], grid(T * ceilDiv(s.H, dnRows))) },
  ];
}

/** Prefill path (many tokens): group pairs by expert, per-expert GEMMs over their tokens only, combine. */
export function moePrefill(ctx: GpuContext, b: MoeBuffers, T: number, s: MoeShape, scratch: MoeScratch): Op[] {
  checkT(T, scratch);
  const tiles = maxTiles(T, s.k, s.E), P = params(ctx, T, tiles), c = { E: s.E, TOPK: s.k };
  const gateUpFlops = 2 * T * s.k * 2 * s.I * s.H, downFlops = 2 * T * s.k * s.H * s.I;
  const gateUpGrid = grid(tiles * ceilDiv(s.I, TN / 2)), downGrid = grid(tiles * ceilDiv(s.H, TN));
  let gemms: Op[];
  if (ctx.int8Matmul && s.format === 'q4') { // the same tiles on int8 activations (moe_int8.wgsl)
    const x = quantizeRows(ctx, b.x, T, s.H);
    const gateUp = { flops: gateUpFlops, ...ctx.op(`moe.gate_up_gemm_int8(${T})`, INT8, 'moe_gate_up_gemm_int8', { FORMAT: FORMAT_ID.q4, TOPK: s.k, H: s.H, I: s.I, GU_WORDS: gateUpConstants(s).GU_WORDS },
      [P, x.xq, b.gateUp, b.slotOf, scratch.tiles, scratch.h, scratch.sorted, x.xs], gateUpGrid) };
    const h = quantizeRows(ctx, scratch.h, T * s.k, s.I);
    const down = { flops: downFlops, ...ctx.op(`moe.down_gemm_int8(${T})`, INT8, 'moe_down_gemm_int8', { FORMAT: FORMAT_ID.q4, H: s.H, I: s.I, DN_WORDS: downConstants(s).DN_WORDS },
      [P, h.xq, b.down, b.slotOf, scratch.tiles, scratch.y, scratch.sorted, h.xs], downGrid) };
    gemms = [x.op, gateUp, h.op, down];
  } else {
    gemms = [
      { flops: gateUpFlops, ...ctx.op(`moe.gate_up_gemm(${T})`, SHADER, 'moe_gate_up_gemm', { ...gateUpConstants(s), TM }, [P, b.x, b.gateUp, b.slotOf, scratch.tiles, scratch.h, scratch.sorted], gateUpGrid) },
      { flops: downFlops, ...ctx.op(`moe.down_gemm(${T})`, SHADER, 'moe_down_gemm', { ...downConstants(s), TM }, [P, scratch.h, b.down, b.slotOf, scratch.tiles, scratch.y, scratch.sorted], downGrid) },
    ];
  }
  return [
    ctx.op(`moe.count(${T})`, ROUTE, 'moe_count', c, [P, b.idx, scratch.blocks, scratch.rank], grid(ceilDiv(T, BLOCK))),
    ctx.op(`moe.scan(${T})`, ROUTE, 'moe_scan', { E: s.E, TM }, [P, scratch.tiles, scratch.blocks, scratch.base], [1]),
    ctx.op(`moe.scatter(${T})`, ROUTE, 'moe_scatter', c, [P, b.idx, scratch.base, scratch.rank, scratch.sorted], grid(ceilDiv(T * s.k, WG))),
    ...gemms,
    combine(ctx, b, scratch.y, T, s),
  ];
}

/**
 * Routed experts + combine, choosing the path by T. Measured on an H100 (Dawn/Vulkan, E 512, k 10, H 2048,
 * I 512, q4): the GEMV path costs ~13 µs per token and the GEMM path 4.4 ms at T = 64, 6.4 ms at T = 512,
 * 12 ms at T = 2048, so the GEMVs win until a few hundred tokens.
 */
export const DECODE_MAX_T = 256;
export function moeExperts(ctx: GpuContext, b: MoeBuffers, T: number, s: MoeShape, scratch: MoeScratch): Op[] {
  return T <= DECODE_MAX_T ? moeDecode(ctx, b, T, s, scratch) : moePrefill(ctx, b, T, s, scratch);
}

/** Whether a step of T tokens runs the decode path (moeDecode), by the step's MoE option or by T. */
export function takesDecodePath(T: number, moe?: 'grouped' | 'per-token'): boolean {
  return moe === 'per-token' || (moe !== 'grouped' && T <= DECODE_MAX_T);
}

function checkT(T: number, scratch: MoeScratch) {
  if (T < 1 || T > scratch.maxT) throw new RangeError(`moe: T = ${T} outside 1..${scratch.maxT} of the scratch buffers`);
}
