// The one definition of how a Hugging Face checkpoint becomes GPU-ready tensors: names, shapes, fusions,
// the GDN un-interleave and quantization. The in-memory loader (HF dir -> GPU) and the packed-model
// converter both go through here, so a packed model is byte-for-byte what the loader would upload.
//
// Dense tensors (resident):            rows x cols (PyTorch [out, in])     format
//   embed                                V x H                               quant.embed
//   lm_head                              V x H                               quant.lmHead
//   norm                                 1 x H                               f32
//   L{i}.input_norm / L{i}.post_norm     1 x H                               f32
//   L{i}.router                          (E+1) x H  [gate ; shared_expert_gate]   f32
//   L{i}.shared_gate_up                  2Is x H    [gate_proj ; up_proj]    quant.linear
//   L{i}.shared_down                     H x Is                              quant.linear
//   GDN    L{i}.in_proj (P x H, rows [q|k|v|z|b|a]), L{i}.conv (convDim x K), L{i}.A_log, L{i}.dt_bias (1 x Hv),
//          L{i}.gated_norm (1 x dv), L{i}.out_proj (H x valueDim)
//   attn   L{i}.qkv_proj ((Hq·2D + 2·Hkv·D) x H, rows [q_proj | k_proj | v_proj]), L{i}.q_norm, L{i}.k_norm (1 x D),
//          L{i}.o_proj (H x Hq·D)
// Routed expert (layer i, expert e), one record: [gate_up (2I x H, rows [gate ; up]) | down (H x I)] in quant.experts.
// The multi-token-prediction layer (`mtp.*`, when the checkpoint has it): after lm_head, mtp.pre_fc_norm_embedding
// and mtp.pre_fc_norm_hidden (1 x H f32), mtp.fc (H x 2H, quant.linear), its decoder layer as a full-attention layer
// L{L} (L = num_hidden_layers; HF's mtp.layers.0) with its experts as layer L, then mtp.norm (1 x H f32).
import type { Checkpoint } from '../checkpoint/checkpoint.ts';
import type { LayerType, Qwen3NextConfig } from '../config.ts';
import { packedWords, type WeightFormat } from '../quant/formats.ts';
import { packInline, packRows, type PackFn } from '../quant/packer.ts';
import { fusedGdnInProj } from './layout.ts';

export interface QuantConfig {
  linear: WeightFormat; // attention, GDN and shared-expert projections
  experts: WeightFormat; // routed experts
  embed: WeightFormat; // embed_tokens
  lmHead: WeightFormat; // lm_head
}

export const QUANT_F32: QuantConfig = { linear: 'f32', experts: 'f32', embed: 'f32', lmHead: 'f32' };
export const QUANT_INT4: QuantConfig = { linear: 'q4', experts: 'q4', embed: 'q8', lmHead: 'q8' };

export interface TensorPlan {
  name: string;
  format: WeightFormat;
  N: number;
  K: number;
}

/** Decoder layers with routed experts in the packed format: the model's, and the MTP layer's as layer L when `mtp`. */
export const packedLayers = (c: Qwen3NextConfig, mtp = false) => c.numLayers + (mtp ? 1 : 0);

/** Where layer i's tensors live in a HF checkpoint: model.layers.i, or mtp.layers.0 for the MTP layer (i = L). */
const layerPrefix = (c: Qwen3NextConfig, i: number) => (i === c.numLayers ? 'mtp.layers.0' : `model.layers.${i}`);

/** Whether a checkpoint carries the MTP layer the runtime packs (config num_nextn_predict_layers >= 1 and mtp.fc). */
export const hasMtp = (ckpt: Checkpoint) => ckpt.config.numNextnPredictLayers >= 1 && ckpt.has('mtp.fc.weight');

const tensor = (name: string, format: WeightFormat, N: number, K: number): TensorPlan => ({ name, format, N, K });

/** Every dense tensor of the packed model, in load order; with `mtp`, the MTP layer's after the model's. */
export function densePlan(c: Qwen3NextConfig, q: QuantConfig, mtp = false): TensorPlan[] {
  const H = c.hiddenSize, L = c.numLayers, t = tensor;
  const plan: TensorPlan[] = [t('embed', q.embed, c.vocabSize, H)];
  for (let i = 0; i < L; i++) plan.push(...layerPlan(c, q, i, c.layerTypes[i]));
  plan.push(t('norm', 'f32', 1, H), t('lm_head', q.lmHead, c.vocabSize, H));
  if (mtp) {
    plan.push(t('mtp.pre_fc_norm_embedding', 'f32', 1, H), t('mtp.pre_fc_norm_hidden', 'f32', 1, H), t('mtp.fc', q.linear, H, 2 * H));
    plan.push(...layerPlan(c, q, L, 'full_attention'), t('mtp.norm', 'f32', 1, H));
  }
  return plan;
}

/** Decoder layer i's dense tensors (see the table above). */
function layerPlan(c: Qwen3NextConfig, q: QuantConfig, i: number, type: LayerType): TensorPlan[] {
  const H = c.hiddenSize, D = c.headDim, Hv = c.linearNumValueHeads, Is = c.sharedExpertIntermediateSize, t = tensor;
  const mixer = type === 'linear_attention'
    ? [
        t(`L${i}.in_proj`, q.linear, 2 * c.keyDim + 2 * c.valueDim + 2 * Hv, H),
        t(`L${i}.conv`, 'f32', c.convDim, c.convKernel),
        t(`L${i}.A_log`, 'f32', 1, Hv),
        t(`L${i}.dt_bias`, 'f32', 1, Hv),
        t(`L${i}.gated_norm`, 'f32', 1, c.linearValueHeadDim),
        t(`L${i}.out_proj`, q.linear, H, c.valueDim),
      ]
    : [
        t(`L${i}.qkv_proj`, q.linear, c.numAttentionHeads * 2 * D + 2 * c.numKeyValueHeads * D, H),
        t(`L${i}.q_norm`, 'f32', 1, D),
        t(`L${i}.k_norm`, 'f32', 1, D),
        t(`L${i}.o_proj`, q.linear, H, c.numAttentionHeads * D),
      ];
  return [
    t(`L${i}.input_norm`, 'f32', 1, H),
    ...mixer,
    t(`L${i}.post_norm`, 'f32', 1, H),
    t(`L${i}.router`, 'f32', c.numExperts + 1, H),
    t(`L${i}.shared_gate_up`, q.linear, 2 * Is, H),
    t(`L${i}.shared_down`, q.linear, H, Is),
  ];
}

/** Words of one expert record and where `down` starts in it. */
export function expertLayout(c: Qwen3NextConfig, format: WeightFormat) {
  const gateUpWords = packedWords(format, 2 * c.moeIntermediateSize, c.hiddenSize);
  const downWords = packedWords(format, c.hiddenSize, c.moeIntermediateSize);
  return { gateUpWords, downWords, words: gateUpWords + downWords };
}

const cat = (...parts: Float32Array[]) => {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
};

/** The f32 values of one dense tensor, gathered and re-laid out from the checkpoint. */
async function denseValues(ckpt: Checkpoint, name: string): Promise<Float32Array> {
  const c = ckpt.config, H = c.hiddenSize, D = c.headDim, Hv = c.linearNumValueHeads, Is = c.sharedExpertIntermediateSize;
  const Hq = c.numAttentionHeads, Hkv = c.numKeyValueHeads;
  const r = (n: string, shape: number[]) => ckpt.read(n, shape);
  if (name === 'embed') return r('model.embed_tokens.weight', [c.vocabSize, H]);
  if (name === 'lm_head') return c.tieWordEmbeddings ? r('model.embed_tokens.weight', [c.vocabSize, H]) : r('lm_head.weight', [c.vocabSize, H]);
  if (name === 'norm') return r('model.norm.weight', [H]);
  if (name === 'mtp.fc') return r('mtp.fc.weight', [H, 2 * H]);
  if (['mtp.pre_fc_norm_embedding', 'mtp.pre_fc_norm_hidden', 'mtp.norm'].includes(name)) return r(`${name}.weight`, [H]);
  const m = /^L(\d+)\.(.+)$/.exec(name);
  if (!m) throw new Error(`unknown packed tensor ${name}`);
  const p = layerPrefix(c, Number(m[1])), a = `${p}.linear_attn`, s = `${p}.self_attn`, mlp = `${p}.mlp`;
  switch (m[2]) {
    case 'input_norm': return r(`${p}.input_layernorm.weight`, [H]);
    case 'post_norm': return r(`${p}.post_attention_layernorm.weight`, [H]);
    case 'in_proj': return fusedGdnInProj(c, await r(`${a}.in_proj_qkvz.weight`, [2 * c.keyDim + 2 * c.valueDim, H]), await r(`${a}.in_proj_ba.weight`, [2 * Hv, H]));
    case 'conv': return r(`${a}.conv1d.weight`, [c.convDim, 1, c.convKernel]);
    case 'A_log': return r(`${a}.A_log`, [Hv]);
    case 'dt_bias': return r(`${a}.dt_bias`, [Hv]);
    case 'gated_norm': return r(`${a}.norm.weight`, [c.linearValueHeadDim]);
    case 'out_proj': return r(`${a}.out_proj.weight`, [H, c.valueDim]);
    case 'qkv_proj': return cat(await r(`${s}.q_proj.weight`, [Hq * 2 * D, H]), await r(`${s}.k_proj.weight`, [Hkv * D, H]), await r(`${s}.v_proj.weight`, [Hkv * D, H]));
    case 'q_norm': return r(`${s}.q_norm.weight`, [D]);
    case 'k_norm': return r(`${s}.k_norm.weight`, [D]);
    case 'o_proj': return r(`${s}.o_proj.weight`, [H, Hq * D]);
    case 'router': return cat(await r(`${mlp}.gate.weight`, [c.numExperts, H]), await r(`${mlp}.shared_expert_gate.weight`, [1, H]));
    case 'shared_gate_up': return cat(await r(`${mlp}.shared_expert.gate_proj.weight`, [Is, H]), await r(`${mlp}.shared_expert.up_proj.weight`, [Is, H]));
    case 'shared_down': return r(`${mlp}.shared_expert.down_proj.weight`, [H, Is]);
  }
  throw new Error(`unknown packed tensor ${name}`);
}

/** `pack`: packInline, or a thread pool's (src/quant/node-pool.ts); big tensors go in row blocks of 1024. */
export async function packDense(ckpt: Checkpoint, t: TensorPlan, pack: PackFn = packInline): Promise<Uint32Array<ArrayBuffer>> {
  return packRows(pack, await denseValues(ckpt, t.name), t.N, t.K, t.format, 1024);
}

/** One routed expert's record: [gate_up | down], packed. */
export async function packExpert(ckpt: Checkpoint, layer: number, expert: number, format: WeightFormat, pack: PackFn = packInline): Promise<Uint32Array<ArrayBuffer>> {
  const c = ckpt.config, H = c.hiddenSize, I = c.moeIntermediateSize;
  const p = `${layerPrefix(c, layer)}.mlp.experts.${expert}`;
  const gateUp = cat(await ckpt.read(`${p}.gate_proj.weight`, [I, H]), await ckpt.read(`${p}.up_proj.weight`, [I, H]));
  const { gateUpWords, words } = expertLayout(c, format);
  const out = new Uint32Array(words);
  const [a, b] = await Promise.all([pack(gateUp, 2 * I, H, format), ckpt.read(`${p}.down_proj.weight`, [H, I]).then((d) => pack(d, H, I, format))]);
  out.set(a, 0);
  out.set(b, gateUpWords);
  return out;
}

/** Where the runtime gets packed weights from: a HF checkpoint packed on the fly, or a packed model store. */
export interface WeightSource {
  readonly config: Qwen3NextConfig;
  readonly quant: QuantConfig;
  /** It also has the MTP layer: densePlan(config, quant, true)'s tensors and the experts of layer L. */
  readonly mtp?: boolean;
  dense(t: TensorPlan): Promise<Uint32Array<ArrayBuffer>>;
  expert(layer: number, expert: number): Promise<Uint32Array<ArrayBuffer>>;
  /** False for an expert a store still being filled does not have yet (reading it fetches it); absent: all there. */
  expertStored?(layer: number, expert: number): boolean;
}

export function checkpointSource(ckpt: Checkpoint, quant: QuantConfig): WeightSource {
  return {
    config: ckpt.config,
    quant,
    mtp: hasMtp(ckpt),
    dense: (t) => packDense(ckpt, t),
    expert: (l, e) => packExpert(ckpt, l, e, quant.experts),
  };
}
