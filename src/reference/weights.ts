// Plain f32 weights of Qwen3NextForCausalLM, loaded from a Hugging Face checkpoint (any float dtype).
// Names mirror HF's modules; matrices are PyTorch [out, in], row-major. The multi-token-prediction layer (`mtp.*`,
// which HF transformers ignores) is read on its own by loadMtpWeights.
// Nothing is re-laid out: the GDN input projections keep their on-disk row order, which the forward undoes per
// token as HF's fix_query_key_value_ordering does (the GPU runtime permutes rows at load instead, src/format).
import type { Checkpoint } from '../checkpoint/checkpoint.ts';
import type { LayerType, Qwen3NextConfig } from '../config.ts';

export interface GatedDeltaNetWeights {
  in_proj_qkvz: Float32Array; // (2·keyDim + 2·valueDim, H), rows grouped by key head: [q_g | k_g | v_g.. | z_g..]
  in_proj_ba: Float32Array; // (2·Hv, H), rows grouped by key head: [b_g.. | a_g..]
  conv1d: Float32Array; // (convDim, K): conv1d.weight [convDim, 1, K] without the middle axis
  A_log: Float32Array; // (Hv)
  dt_bias: Float32Array; // (Hv)
  norm: Float32Array; // (dv), gated RMSNorm weight, plain w
  out_proj: Float32Array; // (H, valueDim)
}

export interface AttentionWeights {
  q_proj: Float32Array; // (Hq·2D, H): per head [query_h | gate_h]
  k_proj: Float32Array; // (Hkv·D, H)
  v_proj: Float32Array; // (Hkv·D, H)
  o_proj: Float32Array; // (H, Hq·D)
  q_norm: Float32Array; // (D), zero-centred
  k_norm: Float32Array; // (D), zero-centred
}

export interface MlpWeights {
  gate_proj: Float32Array; // (I, H)
  up_proj: Float32Array; // (I, H)
  down_proj: Float32Array; // (H, I)
}

export interface SparseMoeWeights {
  gate: Float32Array; // (E, H) router
  experts: MlpWeights[]; // [E], intermediate I = moe_intermediate_size
  shared_expert: MlpWeights; // intermediate Is = shared_expert_intermediate_size
  shared_expert_gate: Float32Array; // (1, H)
}

export interface DecoderLayerWeights {
  type: LayerType;
  input_layernorm: Float32Array; // (H), zero-centred
  linear_attn?: GatedDeltaNetWeights; // iff type == 'linear_attention'
  self_attn?: AttentionWeights; // iff type == 'full_attention'
  post_attention_layernorm: Float32Array; // (H), zero-centred
  mlp: SparseMoeWeights;
}

export interface Qwen3NextWeights {
  config: Qwen3NextConfig;
  embed_tokens: Float32Array; // (V, H)
  layers: DecoderLayerWeights[]; // [L]
  norm: Float32Array; // (H), zero-centred
  lm_head: Float32Array; // (V, H); the embedding matrix when tie_word_embeddings
}

async function loadMlp(ckpt: Checkpoint, p: string, H: number, I: number): Promise<MlpWeights> {
  return {
    gate_proj: await ckpt.read(`${p}.gate_proj.weight`, [I, H]),
    up_proj: await ckpt.read(`${p}.up_proj.weight`, [I, H]),
    down_proj: await ckpt.read(`${p}.down_proj.weight`, [H, I]),
  };
}

/** One decoder layer's weights under `p` (`model.layers.{i}`, or the MTP layer's `mtp.layers.0`). */
async function loadDecoderLayer(ckpt: Checkpoint, p: string, type: LayerType): Promise<DecoderLayerWeights> {
  const c = ckpt.config;
  const H = c.hiddenSize, D = c.headDim, Hv = c.linearNumValueHeads;
  const qkvzDim = 2 * c.keyDim + 2 * c.valueDim;
  const layer: DecoderLayerWeights = {
    type,
    input_layernorm: await ckpt.read(`${p}.input_layernorm.weight`, [H]),
    post_attention_layernorm: await ckpt.read(`${p}.post_attention_layernorm.weight`, [H]),
    mlp: {
      gate: await ckpt.read(`${p}.mlp.gate.weight`, [c.numExperts, H]),
      experts: [],
      shared_expert: await loadMlp(ckpt, `${p}.mlp.shared_expert`, H, c.sharedExpertIntermediateSize),
      shared_expert_gate: await ckpt.read(`${p}.mlp.shared_expert_gate.weight`, [1, H]),
    },
  };
  for (let e = 0; e < c.numExperts; e++) layer.mlp.experts.push(await loadMlp(ckpt, `${p}.mlp.experts.${e}`, H, c.moeIntermediateSize));
  if (type === 'linear_attention') {
    const a = `${p}.linear_attn`;
    layer.linear_attn = {
      in_proj_qkvz: await ckpt.read(`${a}.in_proj_qkvz.weight`, [qkvzDim, H]),
      in_proj_ba: await ckpt.read(`${a}.in_proj_ba.weight`, [2 * Hv, H]),
      conv1d: await ckpt.read(`${a}.conv1d.weight`, [c.convDim, 1, c.convKernel]),
      A_log: await ckpt.read(`${a}.A_log`, [Hv]),
      dt_bias: await ckpt.read(`${a}.dt_bias`, [Hv]),
      norm: await ckpt.read(`${a}.norm.weight`, [c.linearValueHeadDim]),
      out_proj: await ckpt.read(`${a}.out_proj.weight`, [H, c.valueDim]),
    };
  } else {
    const a = `${p}.self_attn`;
    layer.self_attn = {
      q_proj: await ckpt.read(`${a}.q_proj.weight`, [c.numAttentionHeads * D * 2, H]),
      k_proj: await ckpt.read(`${a}.k_proj.weight`, [c.numKeyValueHeads * D, H]),
      v_proj: await ckpt.read(`${a}.v_proj.weight`, [c.numKeyValueHeads * D, H]),
      o_proj: await ckpt.read(`${a}.o_proj.weight`, [H, c.numAttentionHeads * D]),
      q_norm: await ckpt.read(`${a}.q_norm.weight`, [D]),
      k_norm: await ckpt.read(`${a}.k_norm.weight`, [D]),
    };
  }
  return layer;
}

export async function loadWeights(ckpt: Checkpoint): Promise<Qwen3NextWeights> {
  const c = ckpt.config;
  const H = c.hiddenSize, V = c.vocabSize;
  const layers: DecoderLayerWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) layers.push(await loadDecoderLayer(ckpt, `model.layers.${i}`, c.layerTypes[i]));
  const embed_tokens = await ckpt.read('model.embed_tokens.weight', [V, H]);
  return {
    config: c,
    embed_tokens,
    layers,
    norm: await ckpt.read('model.norm.weight', [H]),
    lm_head: c.tieWordEmbeddings ? embed_tokens : await ckpt.read('lm_head.weight', [V, H]),
  };
}

/** The multi-token-prediction layer (vLLM's Qwen3NextMultiTokenPredictor; embeddings and lm_head are the model's). */
export interface MtpWeights {
  pre_fc_norm_embedding: Float32Array; // (H), zero-centred
  pre_fc_norm_hidden: Float32Array; // (H), zero-centred
  fc: Float32Array; // (H, 2H): [embedding | hidden] in
  layer: DecoderLayerWeights; // mtp.layers.0: a full-attention decoder layer with its MoE
  norm: Float32Array; // (H), zero-centred
}

/** `mtp.*` of a checkpoint whose config has num_nextn_predict_layers >= 1 and whose files carry them; else undefined. */
export async function loadMtpWeights(ckpt: Checkpoint): Promise<MtpWeights | undefined> {
  const c = ckpt.config, H = c.hiddenSize;
  if (c.numNextnPredictLayers < 1 || !ckpt.has('mtp.fc.weight')) return undefined;
  return {
    pre_fc_norm_embedding: await ckpt.read('mtp.pre_fc_norm_embedding.weight', [H]),
    pre_fc_norm_hidden: await ckpt.read('mtp.pre_fc_norm_hidden.weight', [H]),
    fc: await ckpt.read('mtp.fc.weight', [H, 2 * H]),
    layer: await loadDecoderLayer(ckpt, 'mtp.layers.0', 'full_attention'),
    norm: await ckpt.read('mtp.norm.weight', [H]),
  };
}
