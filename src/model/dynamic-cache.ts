// Per-layer decode state on the GPU, chosen from layer_types (transformers.js style):
// linear_attention layers keep the conv state (convDim, K-1) and the recurrent state (Hv, dk, dv) f32 in HF order;
// full_attention layers keep K and V caches (Hkv, maxT, D). `position` = tokens consumed so far.
import type { Qwen3NextConfig } from '../config.ts';
import type { GpuContext } from '../gpu/context.ts';

export interface LinearLayerCache { type: 'linear_attention'; conv: GPUBuffer; recurrent: GPUBuffer }
export interface FullLayerCache { type: 'full_attention'; keys: GPUBuffer; values: GPUBuffer }
export type LayerCache = LinearLayerCache | FullLayerCache;

/**
 * A saved decode state: the position and copies of the linear-attention layers' conv and recurrent states.
 * K/V caches need no copy: a token writes only its own position, so rows below `position` stay as they were.
 */
export interface CacheSnapshot { position: number; states: GPUBuffer[] }

export class Qwen3NextGpuDynamicCache {
  position = 0;
  readonly layers: LayerCache[];

  constructor(private readonly ctx: GpuContext, readonly config: Qwen3NextConfig, readonly maxT: number) {
    const c = config;
    this.layers = c.layerTypes.map((type, i): LayerCache =>
      type === 'linear_attention'
        ? {
            type,
            conv: ctx.buffer(c.convDim * (c.convKernel - 1) * 4, `L${i}.conv_state`),
            recurrent: ctx.buffer(c.linearNumValueHeads * c.linearKeyHeadDim * c.linearValueHeadDim * 4, `L${i}.recurrent_state`),
          }
        : {
            type,
            keys: ctx.buffer(c.numKeyValueHeads * maxT * c.headDim * 4, `L${i}.k_cache`),
            values: ctx.buffer(c.numKeyValueHeads * maxT * c.headDim * 4, `L${i}.v_cache`),
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
  }
}
