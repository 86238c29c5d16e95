// Model weights on the GPU, uploaded tensor by tensor from a WeightSource (src/format/pack.ts says what each
// tensor is). Dense weights stay resident; routed experts go into per-layer slot buffers addressed through a
// slot table, so a streaming expert cache can own those buffers and remap experts to slots.
import type { Qwen3NextConfig } from '../config.ts';
import type { GpuContext } from '../gpu/context.ts';
import type { GpuWeight } from '../gpu/packed-weight.ts';
import type { WeightFormat } from '../quant/formats.ts';
import { ropeParameters } from './rope.ts';
import { densePlan, expertLayout, type QuantConfig, type WeightSource } from '../format/pack.ts';

export interface GpuExperts {
  gateUp: GPUBuffer; // slots × packed (2I, H), rows [gate_proj ; up_proj]
  down: GPUBuffer; // slots × packed (H, I)
  slotOf: GPUBuffer; // (E) u32: expert -> slot
  slots: number; // routed-expert records the slot buffers hold: E when fully resident, fewer when src/cache streams them
  format: WeightFormat;
  /** The slot after them holds the shared expert (sharedExpertFits): decode runs it as one more pair a token. */
  sharedSlot?: number;
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
  mtp?: GpuMtpWeights; // the multi-token-prediction layer, when loaded (src/model/mtp.ts)
  invFreq: GPUBuffer; // (R/2) HF's f32 rope inverse frequencies (src/model/rope.ts)
  ropeAttentionFactor: number; // HF's attention_scaling: multiplies cos and sin (YaRN; 1 without scaling)
}

/** The MTP layer's weights (src/format/pack.ts: mtp.* and layer L): embeddings and lm_head are the model's. */
export interface GpuMtpWeights {
  preFcNormEmbedding: GPUBuffer; // (H) zero-centred
  preFcNormHidden: GPUBuffer; // (H) zero-centred
  fc: GpuWeight; // (H, 2H): [embedding | hidden] in
  layer: GpuLayer; // a full-attention decoder layer, its experts all resident
  norm: GPUBuffer; // (H) zero-centred
}

/**
 * Whether the shared expert can sit in one more expert slot and run in decode's expert GEMVs as an 11th pair
 * (two dispatches a layer fewer): its shape and format are an expert's (Is = I, as in Qwen3-Next-80B), and a
 * slot's bytes keep the 256-byte alignment of a binding offset, so the dense shared_gate_up / shared_down that
 * prefill uses are views of that slot, not copies.
 */
export function sharedExpertFits(c: Qwen3NextConfig, quant: QuantConfig): boolean {
  const { gateUpWords, downWords } = expertLayout(c, quant.experts);
  return c.sharedExpertIntermediateSize === c.moeIntermediateSize && quant.linear === quant.experts && (gateUpWords * 4) % 256 === 0 && (downWords * 4) % 256 === 0;
}

/**
 * Fully resident (slots = E): upload every expert, slot e holds expert e. Streaming (slots < E): empty slot
 * buffers and an all-zero slot table, filled on demand by src/cache/expert-cache.ts. `shared`: one more slot.
 */
async function loadExperts(ctx: GpuContext, src: WeightSource, layer: number, slots: number, shared: boolean): Promise<GpuExperts> {
  const c = src.config, format = src.quant.experts, E = c.numExperts;
  const x = emptyExperts(ctx, c, format, layer, slots, shared);
  if (slots < E) return x;
  const { gateUpWords, downWords } = expertLayout(c, format);
  for (let e = 0; e < E; e++) {
    const rec = await src.expert(layer, e);
    ctx.device.queue.writeBuffer(x.gateUp, e * gateUpWords * 4, rec, 0, gateUpWords);
    ctx.device.queue.writeBuffer(x.down, e * downWords * 4, rec, gateUpWords, downWords);
  }
  ctx.device.queue.writeBuffer(x.slotOf, 0, Uint32Array.from({ length: E }, (_, e) => e));
  return x;
}

/** A layer's slot buffers (plus the shared expert's slot when `shared`) and an all-zero slot table. */
export function emptyExperts(ctx: GpuContext, c: Qwen3NextConfig, format: WeightFormat, layer: number, slots: number, shared = false): GpuExperts {
  const { gateUpWords, downWords } = expertLayout(c, format), n = slots + (shared ? 1 : 0);
  return {
    gateUp: ctx.buffer(n * gateUpWords * 4, `L${layer}.experts.gate_up`),
    down: ctx.buffer(n * downWords * 4, `L${layer}.experts.down`),
    slotOf: ctx.upload(new Uint32Array(c.numExperts), `L${layer}.experts.slot_of`),
    slots,
    format,
    ...(shared ? { sharedSlot: slots } : {}),
  };
}

/** The dense shared_gate_up / shared_down of a layer whose shared expert has a slot: views of that slot. */
export function sharedExpertViews(c: Qwen3NextConfig, x: GpuExperts): [string, GpuWeight][] {
  const { gateUpWords, downWords } = expertLayout(c, x.format), H = c.hiddenSize, Is = c.sharedExpertIntermediateSize, s = x.sharedSlot!;
  return [
    ['shared_gate_up', { buffer: x.gateUp, offset: s * gateUpWords * 4, format: x.format, N: 2 * Is, K: H }],
    ['shared_down', { buffer: x.down, offset: s * downWords * 4, format: x.format, N: H, K: Is }],
  ];
}

/**
 * `expertSlots`: GPU slots per layer for routed experts (default numExperts: fully resident). `mtp`: the MTP layer
 * too, when the source has it (its experts always resident).
 */
export async function loadGpuWeights(ctx: GpuContext, src: WeightSource, expertSlots?: number, mtp = false): Promise<GpuWeights> {
  const c = src.config, slots = Math.min(expertSlots ?? c.numExperts, c.numExperts);
  const shared = sharedExpertFits(c, src.quant), isShared = (name: string) => /^L\d+\.shared_(gate_up|down)$/.test(name);
  const withMtp = mtp && !!src.mtp;
  const plan = densePlan(c, src.quant, withMtp);
  const byName = new Map<string, GpuWeight>();
  for (const t of plan) {
    if (shared && isShared(t.name)) continue; // into the layer's extra expert slot, below
    byName.set(t.name, { buffer: ctx.upload(await src.dense(t), t.name), offset: 0, format: t.format, N: t.N, K: t.K });
  }
  const layer = async (i: number, type: GpuLayer['type'], layerSlots: number): Promise<GpuLayer> => {
    const weights = new Map<string, GpuWeight>();
    for (const [name, w] of byName) if (name.startsWith(`L${i}.`)) weights.set(name.slice(`L${i}.`.length), w);
    const experts = await loadExperts(ctx, src, i, layerSlots, shared);
    if (shared) {
      for (const [name, view] of sharedExpertViews(c, experts)) {
        const words = await src.dense(plan.find((t) => t.name === `L${i}.${name}`)!);
        ctx.device.queue.writeBuffer(view.buffer, view.offset, words);
        weights.set(name, view);
      }
    }
    return { type, weights, experts };
  };
  const layers: GpuLayer[] = [];
  for (let i = 0; i < c.numLayers; i++) layers.push(await layer(i, c.layerTypes[i], slots));
  const vector = (name: string) => byName.get(name)!.buffer;
  const mtpWeights: GpuMtpWeights | undefined = withMtp
    ? { preFcNormEmbedding: vector('mtp.pre_fc_norm_embedding'), preFcNormHidden: vector('mtp.pre_fc_norm_hidden'), fc: byName.get('mtp.fc')!, layer: await layer(c.numLayers, 'full_attention', c.numExperts), norm: vector('mtp.norm') }
    : undefined;
  const rope = ropeParameters(c);
  return {
    config: c,
    quant: src.quant,
    embed: byName.get('embed')!,
    layers,
    norm: byName.get('norm')!,
    lmHead: byName.get('lm_head')!,
    invFreq: ctx.upload(rope.invFreq, 'rope.inv_freq'),
    ropeAttentionFactor: rope.attentionFactor,
    ...(mtpWeights ? { mtp: mtpWeights } : {}),
  };
}

/** Frees every weight buffer (a load that failed half way: GPU memory should not wait for the garbage collector). */
export function destroyGpuWeights(w: GpuWeights): void {
  for (const b of [w.embed.buffer, w.norm.buffer, w.lmHead.buffer, w.invFreq]) b.destroy();
  if (w.mtp) for (const b of [w.mtp.preFcNormEmbedding, w.mtp.preFcNormHidden, w.mtp.fc.buffer, w.mtp.norm]) b.destroy();
  for (const l of [...w.layers, ...(w.mtp ? [w.mtp.layer] : [])]) {
    for (const m of l.weights.values()) m.buffer.destroy();
    for (const b of [l.experts.gateUp, l.experts.down, l.experts.slotOf]) b.destroy();
  }
}
