// y = x·Wᵀ for packed weights (shaders/matmul.wgsl): a GEMV for decode-sized T, a tiled GEMM for prefill.
import { type GpuContext, type Op, type Binding } from '../gpu/context.ts';
import { type GpuWeight, weightBinding, weightBytes } from '../gpu/packed-weight.ts';
import { type WeightFormat } from '../quant/formats.ts';
import { grid } from './grid.ts';
import { checkConvWidth } from './conv.ts';

export const FORMAT_ID: Record<WeightFormat, number> = { f32: 0, f16: 1, q4: 2, q8: 3 };

/** Knobs for the benchmark pass; the defaults are picked per shape below. */
export interface MatmulTuning {
  gemvMaxT?: number; // largest T that takes the GEMV path (default 4; tokens go in blocks of <= 4)
  threadsPerRow?: number; // GEMV lanes per row team (power of two)
  teams?: number; // GEMV row teams per workgroup (threadsPerRow · teams <= 256)
  rowsPerThread?: number; // GEMV rows per team (<= 8; times the token block <= 16)
}

/**
 * Decode's causal conv1d + SiLU (conv.ts) on the first `channels` outputs of a one-token GEMV, by the thread that
 * stores each: y (1, channels) and the conv state (channels, K-1) updated, as causalConv1d does for T = 1.
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

const withBytes = (bytes: number, op: Op): Op => ({ ...op, bytes });

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
 * y (T, N) = x (T, K) · Wᵀ. x, y are f32 row-major; W is any packed format.
 * `swiglu`: x is (T, 2K) = [gate | up] and the input is silu(gate) · up (the shared expert's down_proj).
 * x's binding must have room for T·K floats rounded up to 16 bytes (ctx.buffer/ctx.upload always do).
 */
export function matmul(
  ctx: GpuContext,
  x: Binding,
  w: GpuWeight,
  y: Binding,
  T: number,
  opts: { tuning?: MatmulTuning; swiglu?: boolean; conv?: ConvEpilogue } = {},
): Op {
  const { N, K, format } = w;
  if (T < 1 || N < 1 || K < 1) throw new RangeError(`matmul: empty shape T=${T} N=${N} K=${K}`);
  const tune = opts.tuning ?? {};
  const base = { FORMAT: FORMAT_ID[format], N, K, SWIGLU: opts.swiglu ? 1 : 0 };
  const bindings = (params: GPUBuffer) => [params, vec4Binding(x, T * K * (opts.swiglu ? 8 : 4), 'x'), weightBinding(w), y];
  const label = `matmul_${format}(${T}x${K}${opts.swiglu ? ' swiglu' : ''} -> ${N})`;

  if (opts.conv && (T !== 1 || opts.swiglu || opts.conv.channels > N)) throw new RangeError(`matmul: the conv epilogue is for one token, a plain output, at most ${N} channels`);
  if (T <= (tune.gemvMaxT ?? 4)) {
    // Defaults from one sweep on an H100 (2048-wide decode shapes): 128 threads, 64 lanes per row where K
    // allows, 8 rows per team so each x chunk in registers serves 8 rows (x reads, not W, bound q4 at 1 row),
    // fewer rows when that leaves under 128 workgroups.
    const units = Math.ceil(K / UNIT_WEIGHTS[format]);
    const TPR = tune.threadsPerRow ?? Math.min(64, Math.max(4, pow2ceil(units)));
    const TEAMS = tune.teams ?? Math.max(1, 128 / TPR);
    let RPT = tune.rowsPerThread ?? Math.min(8, Math.floor(16 / Math.min(T, 4)));
    if (tune.rowsPerThread === undefined) while (RPT > 1 && Math.ceil(N / (TEAMS * RPT)) < 128) RPT = Math.ceil(RPT / 2);
    const TB = Math.min(T, 4, Math.floor(16 / RPT));
    if (TPR * TEAMS > 256 || RPT > 8) throw new RangeError(`matmul: bad GEMV tuning ${JSON.stringify(tune)}`);
    const tokenBlocks = Math.ceil(T / TB);
    const params = ctx.uniform(new Uint32Array([T, tokenBlocks, 0, 0]));
    const groups = Math.ceil(N / (TEAMS * RPT)) * tokenBlocks;
    const bytes = weightBytes(format, N, K) + 4 * T * (K + N);
    if (opts.conv) {
      const c = opts.conv;
      checkConvWidth(c.K);
      return withBytes(bytes, ctx.op(`${label} gemv + conv(${c.channels})`, 'matmul.wgsl', 'gemv_conv', { ...base, TPR, TEAMS, RPT, TB, CONV_CH: c.channels, CONV_K: c.K },
        [...bindings(params), c.w, c.state, c.y], grid(groups)));
    }
    return withBytes(bytes, ctx.op(`${label} gemv`, 'matmul.wgsl', 'gemv', { ...base, TPR, TEAMS, RPT, TB }, bindings(params), grid(groups)));
  }
  const tilesN = Math.ceil(N / GEMM_TILE), tilesT = Math.ceil(T / GEMM_TILE);
  if (tilesN > 65535 || tilesT > 65535) throw new RangeError(`matmul: ${N}x${T} is past the GEMM grid`);
  const params = ctx.uniform(new Uint32Array([T, 0, 0, 0]));
  return ctx.op(`${label} gemm`, 'matmul.wgsl', 'gemm', base, bindings(params), [tilesN, tilesT]);
}
