// y = x·Wᵀ for packed weights: a GEMV for decode-sized T (shaders/gemv.wgsl), a tiled GEMM for prefill: on int8
// activations and packed dot products for q4 weights where WGSL has them (shaders/matmul_int8.wgsl, the rows
// quantized by a dispatch before it), else in f32 (shaders/matmul.wgsl). A GEMV can build its input rows itself (a
// GemvPrologue), so the RMSNorm before a projection costs no dispatch of its own.
import { type GpuContext, type Op, type Binding } from '../gpu/context.ts';
import { type GpuWeight, weightBinding, weightBytes } from '../gpu/packed-weight.ts';
import { FORMAT_ID, type WeightFormat } from '../quant/formats.ts';
import { grid, MAX_GROUPS } from './grid.ts';
import { checkConvWidth } from './conv.ts';

/** Knobs for tests and the benchmark; the defaults are picked per shape below. */
export interface MatmulTuning {
  gemvMaxT?: number; // largest T that takes the GEMV path (default 4)
  team?: number; // GEMV lanes a row (power of two, 4..32)
  teams?: number; // GEMV teams a workgroup (default 256 / team)
  rows?: number; // GEMV rows a team (1, 2 or 4)
  groups?: number; // workgroups of a GEMV with a prologue (default min(tiles, 512)): each takes tiles in turn
  tokens?: number; // GEMV tokens a workgroup (default 4; with a prologue, at most the rows workgroup memory holds)
  int8Above?: number; // GEMMs of more tokens than this take int8 activations, where the context has them (default 256)
}

/**
 * The input rows of a GEMV (T <= 4 tokens), built in workgroup memory from other buffers (gemv.wgsl):
 *  - rmsnorm: x = Qwen3NextRMSNorm(h + Σ deltas) with `weight`; the matmul's x binding is h (T, K), the deltas
 *    (T, K). `hOut` (T, K) receives h + Σ deltas (the residual stream with its pending adds done).
 *  - gated: x = Qwen3NextRMSNormGated per head of `headDim` values (the GDN output norm): weight · norm(x) · silu(z),
 *    z of token t at element t·zStride + zOffset + head·headDim of `z`.
 */
export type GemvPrologue =
  | { kind: 'rmsnorm'; weight: Binding; eps: number; deltas: Binding[]; hOut?: Binding }
  | { kind: 'gated'; weight: Binding; eps: number; z: Binding; zOffset: number; zStride?: number; headDim: number };

/**
 * Decode's causal conv1d + SiLU (conv.ts) on the first `channels` outputs of a one-token GEMV with an rmsnorm
 * prologue, by the thread that stores each: y (1, channels) and the conv state (channels, K-1) updated. One token
 * only: a verify step keeps the state after each token (conv.ts snapshots), which would be a ninth storage binding.
 */
export interface ConvEpilogue {
  channels: number;
  K: number; // kernel width (conv.ts checkConvWidth)
  w: Binding; // (channels, K) f32
  state: Binding; // (channels, K-1) f32, read and written
  y: Binding; // (1, channels) f32
}

/** Weights per 16-byte unit: the GEMV lanes stride over units of a row. */
const UNIT_WEIGHTS: Record<WeightFormat, number> = { f32: 4, f16: 8, q4: 32, q8: 16 };
const GEMM_TILE = 64;
/** Output tile of gemm_int8 (its BM x BN). */
const INT8_TILE = { T: 128, N: 64 };
/**
 * Steps of at most this many tokens keep f32 activations: a chat turn's prompt is exact (int8 rounding flips
 * brown-tiny's near-ties, e.g. its greedy reply to "Tell me a story."), while the prompts a user waits for, from a
 * few hundred tokens up, take the int8 GEMMs (2.2-2.6x the f32 ones on an H100). The MoE's grouped GEMMs start
 * above the same size (moe.ts DECODE_MAX_T).
 */
export const INT8_ABOVE_T = 256;
const WG = 256;
/**
 * Below this many workgroups a GEMV gives each team fewer rows (more workgroups in flight on a large GPU). A GEMV
 * with a prologue wants many workgroups (each builds its input row); a plain one fewer, with more rows a team (H100,
 * q4 2048x4096: 12.5 us at 256 workgroups of 1 row a team, 9.4 at 128 of 2; BENCHMARKS.md).
 */
const GEMV_MIN_GROUPS = 256;
const PLAIN_GEMV_MIN_GROUPS = 128;
/** A GEMV with a prologue builds its input once per workgroup and then takes tiles in turn: at most this many workgroups a token group. */
const PROLOGUE_GROUPS = 512;
/** Tokens a GEMV workgroup takes (its accumulators: tokens x rows a team <= 16). */
export const GEMV_MAX_TOKENS = 4;

const pow2ceil = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const ceil16 = (n: number) => Math.ceil(n / 16) * 16;

/** A binding read as array<vec4>: its size rounded up to 16 bytes (the buffer must have room). */
function vec4Binding(b: Binding, bytes: number, what: string): Binding {
  const size = ceil16(bytes);
  const buffer = 'usage' in b ? b : b.buffer;
  const offset = 'usage' in b ? 0 : (b.offset ?? 0);
  if (offset + size > buffer.size) throw new RangeError(`matmul: ${what} needs ${size} bytes (16-byte rounded) at ${offset}; buffer has ${buffer.size}`);
  return { buffer, offset, size };
}

/**
 * The op that quantizes `rows` rows of x (rows, K) f32 (`swiglu`: (rows, 2K) read as silu(gate)·up) for the int8
 * GEMMs (matmul_int8.wgsl's quantize_rows): int8 per group of 32 into `xq` (rows, ceil(K/32)·32 bytes) and (scale,
 * Σx) per group into `xs`. Both are context scratch: the GEMM must run before the next quantizeRows.
 */
export function quantizeRows(ctx: GpuContext, x: Binding, rows: number, K: number, swiglu = false): { op: Op; xq: GPUBuffer; xs: GPUBuffer } {
  const G = Math.ceil(K / 32);
  const xq = ctx.scratchBuffer('gemm.x_int8', rows * G * 32), xs = ctx.scratchBuffer('gemm.x_scales', rows * G * 8);
  const params = ctx.uniform(new Uint32Array([rows, 0, 0, 0]));
  const op = ctx.op(`quantize_rows(${rows}x${K}${swiglu ? ' swiglu' : ''})`, 'matmul_int8.wgsl', 'quantize_rows', { K, SWIGLU: swiglu ? 1 : 0 }, [params, x, xq, xs], grid(Math.ceil((rows * G) / WG)));
  return { op, xq, xs };
}

/**
 * y (T, N) = x (T, K) · Wᵀ: one dispatch, or two for the int8 GEMM (the rows' quantization, then the GEMM). x, y are
 * f32 row-major; W is any packed format. x's binding must have room for T·K floats rounded up to 16 bytes
 * (ctx.buffer/ctx.upload always do).
 * `swiglu`: x is (T, 2K) = [gate | up] and the input is silu(gate) · up (the shared expert's down_proj).
 * `prologue` (T <= 4) / `conv` (T = 1): see GemvPrologue and ConvEpilogue.
 */
export function matmul(
  ctx: GpuContext,
  x: Binding,
  w: GpuWeight,
  y: Binding,
  T: number,
  opts: { tuning?: MatmulTuning; swiglu?: boolean; prologue?: GemvPrologue; conv?: ConvEpilogue } = {},
): Op[] {
  const { N, K, format } = w;
  if (T < 1 || N < 1 || K < 1) throw new RangeError(`matmul: empty shape T=${T} N=${N} K=${K}`);
  const tune = opts.tuning ?? {};
  const fused = opts.prologue ?? opts.conv;
  if (fused && (T > GEMV_MAX_TOKENS || opts.swiglu)) throw new RangeError(`matmul: a prologue is for at most ${GEMV_MAX_TOKENS} tokens with a plain input`);
  if (opts.conv && T !== 1) throw new RangeError('matmul: the conv epilogue is for one token');
  if (opts.conv && opts.prologue?.kind !== 'rmsnorm') throw new RangeError('matmul: the conv epilogue comes with an rmsnorm prologue (the GDN in_proj)');
  if (opts.conv && opts.conv.channels > N) throw new RangeError(`matmul: ${opts.conv.channels} conv channels exceed ${N} rows`);
  const label = `${format}(${T}x${K}${opts.swiglu ? ' swiglu' : ''} -> ${N})`;
  const base = { FORMAT: FORMAT_ID[format], N, K, SWIGLU: opts.swiglu ? 1 : 0 };
  const xBytes = T * K * (opts.swiglu ? 8 : 4);
  const bytes = weightBytes(format, N, K) + xBytes + 4 * T * N;

  if (T > (tune.gemvMaxT ?? GEMV_MAX_TOKENS) && !fused) {
    const params = ctx.uniform(new Uint32Array([T, 0, 0, 0])), flops = 2 * T * N * K;
    if (ctx.int8Matmul && format === 'q4' && T > (tune.int8Above ?? INT8_ABOVE_T)) {
      const tilesN = Math.ceil(N / INT8_TILE.N), tilesT = Math.ceil(T / INT8_TILE.T);
      if (tilesN > MAX_GROUPS || tilesT > MAX_GROUPS) throw new RangeError(`matmul: ${N}x${T} is past the GEMM grid`);
      const q = quantizeRows(ctx, x, T, K, opts.swiglu);
      return [q.op, { flops, ...ctx.op(`gemm_int8_${label}`, 'matmul_int8.wgsl', 'gemm_int8', { K, SWIGLU: base.SWIGLU, FORMAT: base.FORMAT, N },
        [params, undefined, undefined, q.xs, q.xq, weightBinding(w), y], [tilesN, tilesT]) }];
    }
    const tilesN = Math.ceil(N / GEMM_TILE), tilesT = Math.ceil(T / GEMM_TILE);
    if (tilesN > MAX_GROUPS || tilesT > MAX_GROUPS) throw new RangeError(`matmul: ${N}x${T} is past the GEMM grid`);
    return [{ flops, ...ctx.op(`gemm_${label}`, 'matmul.wgsl', 'gemm', base, [params, vec4Binding(x, xBytes, 'x'), weightBinding(w), y], [tilesN, tilesT]) }];
  }

  // GEMV: a team of TEAM lanes a row (fewer on short rows), ROWS rows a team while that leaves enough workgroups.
  const units = Math.ceil(K / UNIT_WEIGHTS[format]);
  const TEAM = tune.team ?? Math.min(32, Math.max(4, pow2ceil(units)));
  const teams = tune.teams ?? WG / TEAM;
  // a prologue stages its tokens' rows in workgroup memory: as many as fit beside the reduction's WG floats (a row
  // that does not fit at all fails the pipeline's validation, which model loading reports as a DeviceLimitError)
  const rowBytes = units * UNIT_WEIGHTS[format] * 4;
  const fits = Math.max(1, Math.floor((ctx.device.limits.maxComputeWorkgroupStorageSize - 4 * TEAM * teams) / rowBytes));
  const TB = Math.min(T, tune.tokens ?? GEMV_MAX_TOKENS, fused ? fits : GEMV_MAX_TOKENS);
  let ROWS = tune.rows ?? 4;
  const minGroups = fused ? GEMV_MIN_GROUPS : PLAIN_GEMV_MIN_GROUPS;
  if (tune.rows === undefined) while (ROWS > 1 && Math.ceil(N / (teams * ROWS)) < minGroups) ROWS /= 2;
  if (TEAM > 32 || TEAM * teams > WG || ![1, 2, 4].includes(ROWS)) throw new RangeError(`matmul: bad GEMV tuning ${JSON.stringify(tune)}`);
  const tiles = Math.ceil(N / (teams * ROWS));
  const gemv = { ...base, WG: TEAM * teams, TEAM, ROWS, TB, STAGED: fused ? 1 : 0 };
  const params = ctx.uniform(new Uint32Array([T, 0, 0, 0]));
  const core = [params, vec4Binding(x, xBytes, 'x'), weightBinding(w), y];
  const p = opts.prologue;
  const groups = Math.min(tiles, tune.groups ?? PROLOGUE_GROUPS), fusedGemv = { ...gemv, GROUPS: groups };
  const tokenGroups = Math.ceil(T / TB);
  if (!p) return [{ bytes, ...ctx.op(`gemv_${label}`, 'gemv.wgsl', 'gemv', gemv, core, grid(tiles * tokenGroups)) }];
  if (p.kind === 'gated') {
    if (K % p.headDim) throw new RangeError(`matmul: K=${K} is not whole heads of ${p.headDim}`);
    if (T > 1 && p.zStride === undefined) throw new RangeError('matmul: a gated prologue of several tokens needs zStride');
    const c = { ...fusedGemv, EPS: p.eps, GATE_D: p.headDim, Z_OFFSET: p.zOffset, Z_STRIDE: p.zStride ?? 0 };
    return [{ bytes, ...ctx.op(`gemv_${label} gated_rmsnorm`, 'gemv.wgsl', 'gemv_gated', c, [...core, p.weight, p.z], grid(groups * tokenGroups)) }];
  }
  if (p.deltas.length > 2) throw new RangeError('matmul: at most two pending residual deltas');
  const h = core[1];
  const deltas = [p.deltas[0] ?? h, p.deltas[1] ?? h];
  const norm = { ...fusedGemv, EPS: p.eps, DELTAS: p.deltas.length };
  if (opts.conv) {
    const c = opts.conv;
    checkConvWidth(c.K);
    if (p.deltas.length > 1 || p.hOut) throw new RangeError('matmul: the conv GEMV takes at most one delta and writes no h');
    return [{ bytes, ...ctx.op(`gemv_${label} rmsnorm+conv(${c.channels})`, 'gemv.wgsl', 'gemv_rmsnorm_conv', { ...norm, CONV_CH: c.channels, CONV_K: c.K },
      [...core, p.weight, deltas[0], undefined, undefined, c.w, c.state, c.y], grid(groups)) }];
  }
  const hOut = p.hOut ?? ctx.scratchBuffer('gemv.no_h_out', 16);
  return [{ bytes, ...ctx.op(`gemv_${label} rmsnorm${p.hOut ? '+h' : ''}`, 'gemv.wgsl', 'gemv_rmsnorm', { ...norm, WRITE_H: p.hOut ? 1 : 0 },
    [...core, p.weight, deltas[0], deltas[1], hOut], grid(groups * tokenGroups)) }];
}
