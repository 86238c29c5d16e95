// Per-layer decode state on the GPU, chosen from layer_types (transformers.js style):
// linear_attention layers keep the conv state (convDim, K-1) and the recurrent state (Hv, dk, dv) f32 in HF order;
// full_attention layers keep K and V caches (Hkv, maxT, D), f16 (halfKv: pairs packed in u32, half the memory) or
// f32. `position` = tokens consumed so far.
import type { Qwen3NextConfig } from '../config.ts';
import type { GpuContext } from '../gpu/context.ts';
import { kvElementBytes } from '../kernels/attention.ts';
import { f16BitsToF32, f32ToF16Bits } from '../quant/formats.ts';

export interface LinearLayerCache { type: 'linear_attention'; conv: GPUBuffer; recurrent: GPUBuffer }
export interface FullLayerCache { type: 'full_attention'; keys: GPUBuffer; values: GPUBuffer }
export type LayerCache = LinearLayerCache | FullLayerCache;

/**
 * A saved decode state: the position and copies of the linear-attention layers' conv and recurrent states.
 * K/V caches need no copy: a token writes only its own position, so rows below `position` stay as they were.
 */
export interface CacheSnapshot { position: number; states: GPUBuffer[] }

/** A linear layer's states after each token of a verify step but the last: conv (n, convDim, K-1), recurrent (n, Hv, dk, dv). */
export interface StepStates { conv: GPUBuffer; recurrent: GPUBuffer }

export class Qwen3NextGpuDynamicCache {
  position = 0;
  /** Bumped whenever the state is replaced (reset, restore, write): what was known of the old one no longer holds. */
  generation = 0;
  readonly layers: LayerCache[];
  private steps?: (StepStates | undefined)[];
  /** Tokens stepStates has room for (op lists that bind them are rebuilt when it grows). */
  stepStateCount = 0;

  constructor(private readonly ctx: GpuContext, readonly config: Qwen3NextConfig, readonly maxT: number, readonly halfKv = false) {
    const c = config, kvBytes = c.numKeyValueHeads * maxT * c.headDim * kvElementBytes(halfKv);
    this.layers = c.layerTypes.map((type, i): LayerCache =>
      type === 'linear_attention'
        ? {
            type,
            conv: ctx.buffer(c.convDim * (c.convKernel - 1) * 4, `L${i}.conv_state`),
            recurrent: ctx.buffer(c.linearNumValueHeads * c.linearKeyHeadDim * c.linearValueHeadDim * 4, `L${i}.recurrent_state`),
          }
        : {
            type,
            keys: ctx.buffer(kvBytes, `L${i}.k_cache`),
            values: ctx.buffer(kvBytes, `L${i}.v_cache`),
          },
    );
  }

  /** Forget everything: a fresh sequence. */
  reset(): void {
    const enc = this.ctx.device.createCommandEncoder();
    for (const l of this.layers) {
      if (l.type === 'linear_attention') { enc.clearBuffer(l.conv); enc.clearBuffer(l.recurrent); }
    }
    this.ctx.device.queue.submit([enc.finish()]);
    this.position = 0; // K/V beyond `position` are never read
    this.generation++;
  }

  /** Copy the recursive state aside (GPU to GPU, one submit); `into` reuses an earlier snapshot's buffers. */
  snapshot(into?: CacheSnapshot): CacheSnapshot {
    const live = this.linearStates();
    const states = into?.states ?? live.map((b) => this.ctx.buffer(b.size, `snapshot.${b.label}`));
    this.copy(live, states);
    return { position: this.position, states };
  }

  /** Return to a snapshot's state; K/V rows at or beyond its position are overwritten before they are read. */
  restore(s: CacheSnapshot): void {
    this.copy(s.states, this.linearStates());
    this.position = s.position;
    this.generation++;
  }

  /**
   * The state as host arrays, layer by layer: a linear layer's conv and recurrent state whole, a full layer's keys
   * and values at positions 0 .. position-1 ((Hkv, position, D) each: the rest of the cache is never read), as f32
   * whatever the cache holds (a state moves between f16 and f32 caches unchanged: f16 values are exact in f32).
   */
  async read(): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (const l of this.layers) {
      if (l.type === 'linear_attention') {
        out.push(await this.ctx.readF32(l.conv), await this.ctx.readF32(l.recurrent));
      } else {
        for (const b of [l.keys, l.values]) out.push(await this.readRows(b));
      }
    }
    return out;
  }

  /**
   * Room for the linear layers' states after each of the first n tokens of a step (a speculative verify step of
   * n + 1 tokens writes them; src/model/speculative.ts): one entry per layer, undefined for full-attention layers.
   * K/V need none: rows past the position are overwritten before they are read.
   */
  stepStates(n: number): (StepStates | undefined)[] {
    if (this.steps && this.stepStateCount >= n) return this.steps;
    for (const s of this.steps ?? []) if (s) { s.conv.destroy(); s.recurrent.destroy(); }
    this.stepStateCount = n;
    return (this.steps = this.layers.map((l, i) => l.type !== 'linear_attention' ? undefined : {
      conv: this.ctx.buffer(n * this.stateBytes.conv, `L${i}.conv_state steps`),
      recurrent: this.ctx.buffer(n * this.stateBytes.recurrent, `L${i}.recurrent_state steps`),
    }));
  }

  /**
   * Keep only the first `keep` tokens of the last step (which ran `ran` tokens from `position - ran` and wrote its
   * stepStates): the linear layers' states come back from the step's state after token keep-1 (copies, one submit).
   */
  rollback(ran: number, keep: number): void {
    if (!(keep >= 1 && keep <= ran && ran <= this.position)) throw new RangeError(`rollback: keep ${keep} of ${ran} tokens at position ${this.position}`);
    if (keep < ran) {
      if (!this.steps || this.stepStateCount < keep) throw new Error('rollback: the step wrote no state snapshots (stepStates)');
      const enc = this.ctx.device.createCommandEncoder();
      this.layers.forEach((l, i) => {
        const s = this.steps![i];
        if (l.type !== 'linear_attention' || !s) return;
        const { conv, recurrent } = this.stateBytes;
        enc.copyBufferToBuffer(s.conv, (keep - 1) * conv, l.conv, 0, conv);
        enc.copyBufferToBuffer(s.recurrent, (keep - 1) * recurrent, l.recurrent, 0, recurrent);
      });
      this.ctx.device.queue.submit([enc.finish()]);
    }
    this.position -= ran - keep;
  }

  /** Bytes of one linear layer's conv and recurrent state (their buffers may be rounded up). */
  private get stateBytes() {
    const c = this.config;
    return { conv: c.convDim * (c.convKernel - 1) * 4, recurrent: c.linearNumValueHeads * c.linearKeyHeadDim * c.linearValueHeadDim * 4 };
  }

  /** Take a state read() made (at `position`, from a cache of this config): the inverse of read(). */
  write(position: number, arrays: Float32Array<ArrayBuffer>[]): void {
    const want = this.stateLengths(position);
    if (arrays.length !== want.length || arrays.some((a, i) => a.length !== want[i])) throw new RangeError('Qwen3NextGpuDynamicCache.write: the arrays are not a state of this model at this position');
    const { numKeyValueHeads: H, headDim: D } = this.config, q = this.ctx.device.queue;
    let i = 0;
    for (const l of this.layers) {
      if (l.type === 'linear_attention') {
        q.writeBuffer(l.conv, 0, arrays[i++]);
        q.writeBuffer(l.recurrent, 0, arrays[i++]);
      } else {
        for (const b of [l.keys, l.values]) {
          const a = this.halfKv ? packHalves(arrays[i++]) : arrays[i++];
          const per = this.halfKv ? D / 2 : D; // words a row
          for (let h = 0; h < H; h++) q.writeBuffer(b, h * this.maxT * per * 4, a, h * position * per, position * per);
        }
      }
    }
    this.position = position;
    this.generation++;
  }

  /** Floats of each array read() returns at `position`. */
  stateLengths(position: number): number[] {
    const c = this.config;
    return c.layerTypes.flatMap((t) => t === 'linear_attention'
      ? [c.convDim * (c.convKernel - 1), c.linearNumValueHeads * c.linearKeyHeadDim * c.linearValueHeadDim]
      : [c.numKeyValueHeads * position * c.headDim, c.numKeyValueHeads * position * c.headDim]);
  }

  /** Positions 0 .. position-1 of every kv head of a (Hkv, maxT, D) cache, as (Hkv, position, D) f32. */
  private async readRows(b: GPUBuffer): Promise<Float32Array> {
    const { numKeyValueHeads: H, headDim: D } = this.config, n = this.position * D, bytes = kvElementBytes(this.halfKv);
    const out = new Float32Array(H * n);
    for (let h = 0; h < H && n > 0; h++) {
      const raw = await this.ctx.read(b, n * bytes, h * this.maxT * D * bytes);
      out.set(this.halfKv ? unpackHalves(new Uint16Array(raw)) : new Float32Array(raw), h * n);
    }
    return out;
  }

  private linearStates(): GPUBuffer[] {
    return this.layers.flatMap((l) => (l.type === 'linear_attention' ? [l.conv, l.recurrent] : []));
  }

  private copy(from: GPUBuffer[], to: GPUBuffer[]): void {
    const enc = this.ctx.device.createCommandEncoder();
    from.forEach((b, i) => enc.copyBufferToBuffer(b, 0, to[i], 0, b.size));
    this.ctx.device.queue.submit([enc.finish()]);
  }

  destroy(): void {
    for (const l of this.layers) for (const b of l.type === 'linear_attention' ? [l.conv, l.recurrent] : [l.keys, l.values]) b.destroy();
    for (const s of this.steps ?? []) if (s) { s.conv.destroy(); s.recurrent.destroy(); }
  }
}

let halfTable: Float32Array | undefined;

/** f16 bits -> f32, through a table of all 65,536 halves (a 32K-token state has ~10^8 of them). */
function unpackHalves(h: Uint16Array): Float32Array {
  const t = (halfTable ??= Float32Array.from({ length: 65536 }, (_, i) => f16BitsToF32(i)));
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) out[i] = t[h[i]];
  return out;
}

/** f32 -> f16 pairs packed in u32 (the low half first, as pack2x16float): words of an f16 cache. */
function packHalves(a: Float32Array): Uint32Array<ArrayBuffer> {
  const out = new Uint32Array(a.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = (f32ToF16Bits(a[2 * i]) | (f32ToF16Bits(a[2 * i + 1]) << 16)) >>> 0;
  return out;
}
