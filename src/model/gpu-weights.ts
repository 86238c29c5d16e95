// Model weights on the GPU, uploaded tensor by tensor from a WeightSource (src/model/pack.ts says what each
// tensor is). Dense weights stay resident; routed experts go into per-layer slot buffers addressed through a
// slot table, so a streaming expert cache can own those buffers and remap experts to slots.
import type { Qwen3NextConfig } from '../config.ts';
import type { GpuContext } from '../gpu/context.ts';
import type { GpuWeight } from '../gpu/weights.ts';
import type { WeightFormat } from '../quant/formats.ts';
import { ropeInvFreq } from '../reference/ops.ts';
import { densePlan, expertLayout, type QuantConfig, type WeightSource } from './pack.ts';

export interface GpuExperts {
  gateUp: GPUBuffer; // slots × packed (2I, H), rows [gate_proj ; up_proj]
  down: GPUBuffer; // slots × packed (H, I)
  slotOf: GPUBuffer; // (E) u32: expert -> slot
  slots: number; // records the slot buffers hold: E when fully resident, fewer when src/cache streams them
  format: WeightFormat;
}

export interface GpuLayer {
  type: 'linear_attention' | 'full_attention';
  weights: Map<string, GpuWeight>; // the layer's dense tensors by short name ('in_proj', 'router', ...)
  experts: GpuExperts;
}

export interface GpuWeights {
  config: Qwen3NextConfig;
  quant: QuantConfig;
  embed: GpuWeight; // (V, H)
  layers: GpuLayer[];
  norm: GpuWeight; // (1, H) zero-centred
  lmHead: GpuWeight; // (V, H)
  invFreq: GPUBuffer; // (R/2) HF's f32 rope inverse frequencies
}

/**
 * Fully resident (slots = E): upload every expert, slot e holds expert e. Streaming (slots < E): empty slot
 * buffers and an all-zero slot table, filled on demand by src/cache/expert-cache.ts.
 */
async function loadExperts(ctx: GpuContext, src: WeightSource, layer: number, slots: number): Promise<GpuExperts> {
  const c = src.config, format = src.quant.experts, E = c.numExperts;
  const { gateUpWords, downWords } = expertLayout(c, format);
  if (slots < E) return emptyExperts(ctx, c, format, layer, slots);
  const gateUp = ctx.buffer(slots * gateUpWords * 4, `L${layer}.experts.gate_up`);
  const down = ctx.buffer(slots * downWords * 4, `L${layer}.experts.down`);
  for (let e = 0; e < E; e++) {
    const rec = await src.expert(layer, e);
    ctx.device.queue.writeBuffer(gateUp, e * gateUpWords * 4, rec, 0, gateUpWords);
    ctx.device.queue.writeBuffer(down, e * downWords * 4, rec, gateUpWords, downWords);
  }
  const slotOf = ctx.upload(Uint32Array.from({ length: E }, (_, e) => e), `L${layer}.experts.slot_of`);
  return { gateUp, down, slotOf, slots, format };
}

/** A streaming layer's empty slot buffers and an all-zero slot table, for src/cache/expert-cache.ts to fill. */
export function emptyExperts(ctx: GpuContext, c: Qwen3NextConfig, format: WeightFormat, layer: number, slots: number): GpuExperts {
  const { gateUpWords, downWords } = expertLayout(c, format);
  return {
    gateUp: ctx.buffer(slots * gateUpWords * 4, `L${layer}.experts.gate_up`),
    down: ctx.buffer(slots * downWords * 4, `L${layer}.experts.down`),
    slotOf: ctx.upload(new Uint32Array(c.numExperts), `L${layer}.experts.slot_of`),
    slots,
    format,
  };
}

/** `expertSlots`: GPU slots per layer for routed experts (default numExperts: fully resident). */
export async function loadGpuWeights(ctx: GpuContext, src: WeightSource, expertSlots?: number): Promise<GpuWeights> {
  const c = src.config, slots = Math.min(expertSlots ?? c.numExperts, c.numExperts);
  const byName = new Map<string, GpuWeight>();
  for (const t of densePlan(c, src.quant)) {
    byName.set(t.name, { buffer: ctx.upload(await src.dense(t), t.name), offset: 0, format: t.format, N: t.N, K: t.K });
  }
  const layers: GpuLayer[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const weights = new Map<string, GpuWeight>();
    for (const [name, w] of byName) if (name.startsWith(`L${i}.`)) weights.set(name.slice(`L${i}.`.length), w);
    layers.push({ type: c.layerTypes[i], weights, experts: await loadExperts(ctx, src, i, slots) });
  }
  return {
    config: c,
    quant: src.quant,
    embed: byName.get('embed')!,
    layers,
    norm: byName.get('norm')!,
    lmHead: byName.get('lm_head')!,
    invFreq: ctx.upload(ropeInvFreq(c.ropeTheta, c.rotaryDim), 'rope.inv_freq'),
  };
}

/** Frees every weight buffer (a load that failed half way: GPU memory should not wait for the garbage collector). */
export function destroyGpuWeights(w: GpuWeights): void {
  for (const b of [w.embed.buffer, w.norm.buffer, w.lmHead.buffer, w.invFreq]) b.destroy();
  for (const l of w.layers) {
    for (const m of l.weights.values()) m.buffer.destroy();
    for (const b of [l.experts.gateUp, l.experts.down, l.experts.slotOf]) b.destroy();
  }
}
