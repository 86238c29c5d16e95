// Gated DeltaNet core kernels: gate/norm prep and the recurrent step (shaders/gdn.wgsl), chunked prefill
// (shaders/gdn_chunk.wgsl). Buffers are f32; layouts:
//   y      (T, convDim) conv output [q_all | k_all | v_all], convDim = 2·Hk·dk + Hv·dv (v is read from here)
//   proj   (T, P) fused projection [q_all | k_all | v_all | z | b | a], P = 2·Hk·dk + 2·Hv·dv + 2·Hv
//   q, k   (T, Hk, dk) q̂ = l2norm(q)·dk^-1/2, k̂ = l2norm(k), at key heads (value head h reads h / (Hv/Hk))
//   g, beta (T, Hv); state (Hv, dk, dv) HF order; o (T, Hv, dv)
import type { Qwen3NextConfig } from '../config.ts';
import { type GpuContext, type Op, type Binding, ceilDiv } from '../gpu/context.ts';
import { grid } from './grid.ts';

/** The GDN head shape, as in the model config (a Qwen3NextConfig fits). */
export type GdnShape = Pick<Qwen3NextConfig, 'linearNumKeyHeads' | 'linearNumValueHeads' | 'linearKeyHeadDim' | 'linearValueHeadDim'>;

const CHUNK = 64; // gdn_chunk.wgsl's C

/** The head shapes the GDN kernels support (throws, naming the field). */
export function checkGdnShape(c: GdnShape) {
  const HK = c.linearNumKeyHeads, HV = c.linearNumValueHeads, DK = c.linearKeyHeadDim, DV = c.linearValueHeadDim;
  if (HV % HK !== 0) throw new Error(`GDN: Hv ${HV} is not a multiple of Hk ${HK}`);
  if (DK % 4 !== 0 || DV % 4 !== 0) throw new Error(`gdnChunked: dk ${DK} and dv ${DV} must be multiples of 4`);
  if (DK > 256) throw new Error(`GDN: dk ${DK} is over 256 (the recurrent step keeps dk / 8 state rows a thread in registers, at most 32)`);
}

function shapeConstants(T: number, c: GdnShape) {
  if (T < 1) throw new Error('GDN kernels need T >= 1');
  const HK = c.linearNumKeyHeads, HV = c.linearNumValueHeads, DK = c.linearKeyHeadDim, DV = c.linearValueHeadDim;
  if (HV % HK !== 0) throw new Error(`GDN: Hv ${HV} is not a multiple of Hk ${HK}`);
  return { HK, HV, DK, DV };
}

/**
 * From the conv output y and the b, a columns of proj (the last 2·Hv of each row of P): q̂, k̂ (l2-normalised
 * with eps 1e-6 inside the sqrt, q̂ also × dk^-1/2), g = −exp(A_log)·softplus(a + dt_bias), beta = sigmoid(b).
 * aLog, dtBias: (Hv).
 */
export function gdnPrep(ctx: GpuContext, y: Binding, proj: Binding, P: number, aLog: Binding, dtBias: Binding, q: Binding, k: Binding, g: Binding, beta: Binding, T: number, cfg: GdnShape): Op {
  const c = shapeConstants(T, cfg);
  const params = ctx.uniform(new Uint32Array([T, P, P - 2 * c.HV, P - c.HV]));
  return ctx.op(`gdn_prep(T=${T})`, 'gdn.wgsl', 'gdn_prep', { ...c, WG: 64, TEAM: 32 }, [params, y, proj, aLog, dtBias, q, k, g, beta], grid(T * 2 * c.HK));
}

/**
 * Token-by-token delta rule (decode, T = 1; fine for small T): state updated in place, o written.
 * Same arguments as gdnChunked, so a caller can pick either path.
 */
export function gdnRecurrent(ctx: GpuContext, q: Binding, k: Binding, y: Binding, g: Binding, beta: Binding, state: Binding, o: Binding, T: number, cfg: GdnShape): Op[] {
  const c = shapeConstants(T, cfg);
  const CB = 32, WG = 256;
  const params = ctx.uniform(new Uint32Array([T, 0, 0, 0]));
  return [ctx.op(`gdn_recurrent(T=${T})`, 'gdn.wgsl', 'gdn_recurrent', { ...c, WG, CB }, [params, y, q, k, g, beta, state, o], grid(c.HV * ceilDiv(c.DV, CB)))];
}

/**
 * gdnPrep and gdnRecurrent in one dispatch (decode): each workgroup normalises its key head's q, k from y and
 * computes its head's g, beta from proj's b, a columns (no q̂/k̂/g/beta buffers; prefill taps use the pair).
 * `snapshots` (T-1, Hv, dk, dv): also the state after each token but the last (a speculative verify step).
 */
export function gdnStep(ctx: GpuContext, y: Binding, proj: Binding, P: number, aLog: Binding, dtBias: Binding, state: Binding, o: Binding, T: number, cfg: GdnShape, snapshots?: Binding): Op {
  const c = shapeConstants(T, cfg);
  const CB = 32, WG = 256;
  const params = ctx.uniform(new Uint32Array([T, P, P - 2 * c.HV, P - c.HV]));
  const bytes = 2 * c.HV * c.DK * c.DV * 4; // the state, read and written
  const snaps = snapshots ?? ctx.scratchBuffer('no snapshots', 16);
  const constants = { ...c, WG, CB, TEAM: 32, SNAP: snapshots ? 1 : 0 };
  return { bytes, ...ctx.op(`gdn_step(T=${T})`, 'gdn.wgsl', 'gdn_step', constants, [params, y, proj, aLog, dtBias, snaps, state, o], grid(c.HV * ceilDiv(c.DV, CB))) };
}

const align256 = (n: number) => Math.ceil(n / 256) * 256;

/** Scratch regions of the chunked prefill: k_cumdecay (T, Hv, dk), u (T, Hv, dv), attn (T, Hv, 64). */
function scratchLayout(T: number, c: { HV: number; DK: number; DV: number }) {
  const kcd = align256(T * c.HV * c.DK * 4), u = align256(T * c.HV * c.DV * 4), attn = align256(T * c.HV * CHUNK * 4);
  return { kcd: [0, kcd], u: [kcd, u], attn: [kcd + u, attn], bytes: kcd + u + attn };
}

/** Bytes of scratch gdnChunked needs for T tokens: T·Hv·(dk + dv + 64)·4, rounded up. */
export function gdnChunkedScratchBytes(T: number, cfg: GdnShape): number {
  return scratchLayout(T, shapeConstants(T, cfg)).bytes;
}

// One scratch buffer per context, grown on demand and shared by every layer: the dispatches of an op list run
// in order, so layers never overlap. A grown buffer replaces the old one, which ops already built keep alive.
const sharedScratch = new WeakMap<GpuContext, GPUBuffer>();
function scratchFor(ctx: GpuContext, bytes: number): GPUBuffer {
  let buf = sharedScratch.get(ctx);
  if (!buf || buf.size < bytes) {
    buf = ctx.buffer(bytes, 'gdn chunk scratch');
    sharedScratch.set(ctx, buf);
  }
  return buf;
}

/**
 * Chunked (UT/WY) delta rule for a prefill of T tokens, chunk 64: state holds the initial state and receives
 * the final one; o written. Two dispatches (see gdn_chunk.wgsl). scratch: gdnChunkedScratchBytes(T, cfg) bytes
 * (default: one buffer per context, shared by all layers). Needs dk, dv multiples of 4.
 */
export function gdnChunked(ctx: GpuContext, q: Binding, k: Binding, y: Binding, g: Binding, beta: Binding, state: Binding, o: Binding, T: number, cfg: GdnShape, scratch?: GPUBuffer): Op[] {
  const c = shapeConstants(T, cfg);
  checkGdnShape(cfg);
  const s = scratchLayout(T, c);
  scratch ??= scratchFor(ctx, s.bytes);
  if (scratch.size < s.bytes) throw new Error(`gdnChunked: scratch of ${scratch.size} B < ${s.bytes} B`);
  const BV = [16, 8, 4].find((b) => c.DV % b === 0)!; // state columns per scan workgroup
  const region = ([offset, size]: number[]) => ({ buffer: scratch, offset, size });
  const params = ctx.uniform(new Uint32Array([T, 0, 0, 0]));
  return [
    ctx.op(`gdn_chunk_wy(T=${T})`, 'gdn_chunk.wgsl', 'gdn_chunk_wy', c, [params, q, k, g, y, beta, region(s.kcd), region(s.u), region(s.attn)], grid(ceilDiv(T, CHUNK) * c.HV)),
    ctx.op(`gdn_chunk_scan(T=${T})`, 'gdn_chunk.wgsl', 'gdn_chunk_scan', { ...c, BV }, [params, q, k, g, state, o, region(s.kcd), region(s.u), region(s.attn)], grid(c.HV * (c.DV / BV))),
  ];
}
