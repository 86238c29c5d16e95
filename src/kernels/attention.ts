// Gated softmax attention kernels (shaders/attention.wgsl), REFERENCE.md §3.
// Layouts: qkv (T, Hq*2D + 2*Hkv*D) = [q_proj output, per head [query_h | gate_h] | k | v];
// q, gate (T, Hq, D); kCache, vCache (Hkv, maxT, D) holding post-k_norm, post-RoPE keys at absolute positions, f32 or
// (halfKv) f16 pairs packed in u32 (shaders/kv.wgsl, kv.f16.wgsl);
// out (T, Hq*D). invFreq (R/2) f32 is HF's, from ropeInvFreq in src/model/rope.ts.
import { type Binding, type Constants, type GpuContext, type Op } from '../gpu/context.ts';
import { grid } from './grid.ts';

export interface AttnDims {
  Hq: number;
  Hkv: number;
  D: number; // head_dim
  R: number; // rotary dims
  maxT: number; // cache capacity in positions
  eps: number; // rms_norm_eps of q_norm / k_norm
  ropeScale?: number; // multiplies RoPE's cos and sin: YaRN's attention factor (default 1)
  halfKv?: boolean; // K/V caches in f16 (default f32)
}

/** Bytes of one cached key or value element. */
export const kvElementBytes = (halfKv = false) => (halfKv ? 2 : 4);

export interface AttnOptions {
  /** Force the split-K path with this many keys per split (default: see `attention`, sized by splitLen()). */
  splitLen?: number;
}

/**
 * Rewrites a reusable op for a new cache position (its uniform and, for the split path, its grid). A decode op list
 * is built once and replayed every token (src/model/forward.ts); only these ops depend on the position.
 */
export type PositionUpdate = (pos0: number) => void;

// Tiles of the flash loop (see the shader): BQ packed (token, head) rows x BK keys per workgroup, a TR x TC
// thread grid, head-dim chunks of at most DC. Prefill: 256 threads, 2x2 scores and 2 x D/16 outputs per thread.
// Decode: 8 rows = the 8 query heads of a kv head at the real shape, 128 threads.
const PREFILL = { BQ: 32, BK: 32, TR: 16, TC: 16, DC: 32 };
const DECODE = { BQ: 8, BK: 32, TR: 8, TC: 16, DC: 64 };
// Split-K for decode: aim for ~TARGET_GROUPS workgroups, at least MIN_SPLIT keys and at most MAX_SPLITS splits.
const TARGET_GROUPS = 512;
const MIN_SPLIT = 64;
const MAX_SPLITS = 256;
// T > 1 takes the split path too when the prefill grid would be this small and the cache this long.
const SPLIT_BELOW_GROUPS = 128;
const SPLIT_FROM_KEYS = 1024;

/** The head shapes the attention kernels support (throws, naming the field). */
export function checkAttnShape(d: Pick<AttnDims, 'Hq' | 'Hkv' | 'D' | 'R'>) {
  if (d.Hq % d.Hkv) throw new Error(`attention: Hq ${d.Hq} is not a multiple of Hkv ${d.Hkv}`);
  if (d.D % 16 || d.D > 256) throw new Error(`attention: head_dim ${d.D} must be a multiple of 16, at most 256`);
  if (d.R % 2 || d.R > d.D) throw new Error(`attention: rotary dims ${d.R} must be even and at most ${d.D}`);
}

function check(T: number, pos0: number, d: AttnDims) {
  checkAttnShape(d);
  if (T < 1 || pos0 + T > d.maxT) throw new Error(`attention: positions ${pos0}..${pos0 + T - 1} do not fit a cache of ${d.maxT}`);
}

/**
 * q/k zero-centred RMSNorm, partial NeoX RoPE at positions pos0.., gate split out of q_proj's output,
 * k and v written into the caches at positions pos0..pos0+T-1. One 64-thread workgroup per (token, head).
 */
export function attnPrep(
  ctx: GpuContext, qkv: Binding, qNorm: Binding, kNorm: Binding, invFreq: Binding,
  q: Binding, gate: Binding, kCache: Binding, vCache: Binding, T: number, pos0: number, dims: AttnDims,
  updates?: PositionUpdate[],
): Op {
  check(T, pos0, dims);
  const { Hq, Hkv, D, R, maxT, eps, ropeScale = 1 } = dims;
  const words = new Uint32Array([T, pos0, 0, 0]), params = updates ? ctx.mutableUniform(words) : ctx.uniform(words);
  updates?.push((p) => { check(T, p, dims); ctx.device.queue.writeBuffer(params, 0, new Uint32Array([T, p, 0, 0])); });
  const constants = { D, HQ: Hq, HKV: Hkv, MAX_T: maxT, R, EPS: eps, ROPE_SCALE: ropeScale, WG: 64, TEAM: 32 };
  return ctx.op(`attn_prep(T=${T})`, 'attention.wgsl', 'attn_prep', constants,
    [params, qkv, qNorm, kNorm, invFreq, q, gate, kCache, vCache], grid(T * (Hq + Hkv)), dims.halfKv);
}

/** Largest head-dim chunk <= max that is a multiple of the thread columns and divides D. */
function chunk(D: number, max: number, TC: number): number {
  for (let dc = max; dc >= TC; dc -= TC) if (D % dc === 0) return dc;
  return TC;
}

/** Keys per split for a decode over Tk keys with `groups` workgroups per split. */
export function splitLen(Tk: number, groups: number): number {
  const splits = Math.min(MAX_SPLITS, Math.max(1, Math.ceil(TARGET_GROUPS / groups)));
  return Math.max(MIN_SPLIT, Math.ceil(Math.ceil(Tk / splits) / 32) * 32);
}

/** The split length attentionDecode uses over Tk keys: a reusable decode list stays valid while it is unchanged. */
export function decodeSplitLen(Tk: number, dims: Pick<AttnDims, 'Hkv'>): number {
  const splits = Math.max(Math.ceil(DECODE_GROUPS / dims.Hkv), Math.ceil(Tk / DECODE_MAX_SPLIT));
  return Math.max(DECODE_MIN_SPLIT, Math.ceil(Math.ceil(Tk / splits) / 4) * 4);
}

/** The split length attention() takes for a replayable op list of T queries at pos0: the list stays valid while it is unchanged. */
export function replaySplitLen(T: number, pos0: number, dims: Pick<AttnDims, 'Hq' | 'Hkv'>): number {
  return splitLen(pos0 + T, Math.ceil((T * (dims.Hq / dims.Hkv)) / DECODE.BQ) * dims.Hkv);
}

/**
 * out (T, Hq*D) = softmax(q kᵀ / √D) v ⊙ sigmoid(gate), causal over the cache: query t sits at absolute position
 * pos0 + t and sees keys 0..pos0+t (attnPrep must have written this call's keys). GQA: q head h reads kv head
 * ⌊h / (Hq/Hkv)⌋. Prefill: one dispatch of flash tiles. Decode (T = 1, or a few tokens against >= 1024 keys):
 * the keys are split over workgroups (flash-decoding), then a combine dispatch merges the splits and applies the gate.
 * `updates`: a list replayed at later positions (always split; replaySplitLen says when it must be rebuilt).
 */
export function attention(
  ctx: GpuContext, q: Binding, kCache: Binding, vCache: Binding, gate: Binding, out: Binding,
  T: number, pos0: number, dims: AttnDims, opts: AttnOptions = {}, updates?: PositionUpdate[],
): Op[] {
  check(T, pos0, dims);
  const { Hq, Hkv, D, maxT } = dims;
  const G = Hq / Hkv;
  const Tk = pos0 + T;
  // Split the keys for decode, and for a few tokens against a long cache (too few prefill workgroups to fill a GPU).
  const prefillGroups = Math.ceil((T * G) / PREFILL.BQ) * Hkv;
  const split = opts.splitLen !== undefined || T === 1 || !!updates || (prefillGroups < SPLIT_BELOW_GROUPS && Tk >= SPLIT_FROM_KEYS);
  const tile = split ? DECODE : PREFILL;
  const constants: Constants = { D, HQ: Hq, HKV: Hkv, MAX_T: maxT, ...tile, DC: chunk(D, tile.DC, tile.TC) };
  const tiles = Math.ceil((T * G) / tile.BQ) * Hkv;
  if (!split) {
    const params = ctx.uniform(new Uint32Array([T, pos0, 0, 0]));
    // q·k and p·v for each query over the keys it sees (pos0 + t + 1)
    const flops = 4 * Hq * D * T * (pos0 + (T + 1) / 2);
    return [{ flops, ...ctx.op(`attn_prefill(T=${T}@${pos0})`, 'attention.wgsl', 'attn_prefill', constants,
      [params, q, kCache, vCache, gate, out], grid(tiles), dims.halfKv) }];
  }
  const len = opts.splitLen ?? splitLen(Tk, tiles);
  const nSplit = Math.ceil(Tk / len);
  // A replayable op sizes its partials for the whole cache: later positions only add splits.
  const capacity = updates ? Math.ceil(maxT / len) : nSplit;
  const params = ctx.mutableUniform(new Uint32Array([T, pos0, len, nSplit])); // updates rewrite it
  const partO = ctx.scratchBuffer('attn.part_o', capacity * T * Hq * D * 4);
  const partMl = ctx.scratchBuffer('attn.part_ml', capacity * T * Hq * 8);
  const splitOp = ctx.op(`attn_split(T=${T}, ${len} keys/split)`, 'attention.wgsl', 'attn_split', constants,
    [params, q, kCache, vCache, partO, partMl], grid(tiles * nSplit), dims.halfKv);
  const kvBytes = (keys: number) => 2 * Hkv * keys * D * kvElementBytes(dims.halfKv);
  splitOp.bytes = kvBytes(Tk);
  updates?.push((p) => {
    check(T, p, dims);
    const n = Math.ceil((p + T) / len);
    ctx.device.queue.writeBuffer(params, 0, new Uint32Array([T, p, len, n]));
    splitOp.workgroups = grid(tiles * n);
    splitOp.bytes = kvBytes(p + T);
  });
  return [splitOp, combine(ctx, params, partO, partMl, { binding: gate, stride: D, offset: 0 }, out, T, dims)];
}

/** Merges the splits' partials of T tokens and applies sigmoid(gate): element d of row (t, h) reads gate at row·stride + offset + d. */
function combine(ctx: GpuContext, params: GPUBuffer, partO: GPUBuffer, partMl: GPUBuffer, gate: { binding: Binding; stride: number; offset: number }, out: Binding, T: number, dims: AttnDims): Op {
  const { Hq, Hkv, D } = dims, CW = Math.min(64, D), SG = 4;
  const c = { D, HQ: Hq, HKV: Hkv, CW, SG, WG: CW * SG, TEAM: Math.min(32, CW), GATE_STRIDE: gate.stride, GATE_OFFSET: gate.offset };
  return ctx.op(`attn_combine(T=${T})`, 'attention.wgsl', 'attn_combine', c, [params, partO, partMl, gate.binding, out], grid(T * Hq * Math.ceil(D / CW)));
}

// One token's decode (attn_decode): workgroups of (kv head, split); at least DECODE_GROUPS of them, splits of at
// least DECODE_MIN_SPLIT keys (a multiple of 4: a warp loads 4 keys at a time) and at most DECODE_MAX_SPLIT: a warp
// walks its split's keys one dependent step after another, so a long context takes more workgroups, not longer
// splits (at 262K keys: 2,048 workgroups of 256 keys instead of 256 of 2,048). The split length then stays 256 from
// 32K keys on, and the replayed op list is not rebuilt as the context grows.
const DECODE_GROUPS = 256;
const DECODE_MIN_SPLIT = 32;
const DECODE_MAX_SPLIT = 256;

/** Lanes a query head in attn_decode: the most (a power of two, at most 32) that leaves each a multiple of 4 dims. */
const decodeTeam = (D: number) => {
  let t = 32;
  while (D % (4 * t)) t /= 2;
  return t;
};

/**
 * Whether attentionDecode runs this shape: a warp per query head of a kv head within 256 threads (WebGPU's default),
 * and a lane's slice of 4 keys within attention.wgsl's registers (KT · DPL4 <= KV_MAX4).
 */
export const attentionDecodeFits = (d: Pick<AttnDims, 'Hq' | 'Hkv' | 'D'>) => (d.Hq / d.Hkv) * decodeTeam(d.D) <= 256 && d.D / decodeTeam(d.D) <= 32;

/**
 * One new token at position pos0 (attnPrep + attention in two dispatches): its queries and key normed and rotated
 * inside the attention kernel from the fused projection qkv (1, Hq·2D + 2·Hkv·D), the key and value written into the
 * caches, the keys split over workgroups (flash-decoding) and the splits merged with sigmoid(gate) read from qkv.
 */
export function attentionDecode(
  ctx: GpuContext, qkv: Binding, qNorm: Binding, kNorm: Binding, invFreq: Binding, kCache: Binding, vCache: Binding,
  out: Binding, pos0: number, dims: AttnDims, updates?: PositionUpdate[], splitLen?: number,
): Op[] {
  check(1, pos0, dims);
  const { Hq, Hkv, D, R, maxT, eps, ropeScale = 1 } = dims, TEAM = decodeTeam(D), G = Hq / Hkv;
  if (splitLen !== undefined && (splitLen % 4 || splitLen < 4)) throw new RangeError(`attentionDecode: split length ${splitLen} is not a multiple of 4`);
  const len = splitLen ?? decodeSplitLen(pos0 + 1, dims), nSplit = Math.ceil((pos0 + 1) / len);
  const capacity = updates ? Math.ceil(maxT / len) : nSplit;
  const params = ctx.mutableUniform(new Uint32Array([1, pos0, len, nSplit])); // updates rewrite it
  const partO = ctx.scratchBuffer('attn.part_o', capacity * Hq * D * 4);
  const partMl = ctx.scratchBuffer('attn.part_ml', capacity * Hq * 8);
  const c = { D, HQ: Hq, HKV: Hkv, MAX_T: maxT, R, EPS: eps, ROPE_SCALE: ropeScale, TEAM, WG: G * TEAM };
  const op = ctx.op(`attn_decode(${len} keys/split)`, 'attention.wgsl', 'attn_decode', c,
    [params, qkv, qNorm, kNorm, invFreq, kCache, vCache, partO, partMl], grid(Hkv * nSplit), dims.halfKv);
  const kvBytes = (keys: number) => 2 * Hkv * keys * D * kvElementBytes(dims.halfKv);
  op.bytes = kvBytes(pos0 + 1);
  updates?.push((p) => {
    check(1, p, dims);
    if ((splitLen ?? decodeSplitLen(p + 1, dims)) !== len) throw new Error('attentionDecode: the split length changed; rebuild the op list');
    const n = Math.ceil((p + 1) / len);
    ctx.device.queue.writeBuffer(params, 0, new Uint32Array([1, p, len, n]));
    op.workgroups = grid(Hkv * n);
    op.bytes = kvBytes(p + 1);
  });
  return [op, combine(ctx, params, partO, partMl, { binding: qkv, stride: 2 * D, offset: D }, out, 1, dims)];
}
