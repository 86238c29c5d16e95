// Qwen3-Next config.json -> one normalised, validated config with every derived size.
// Accepts both forms found in the wild (REFERENCE.md §0):
//   - the released checkpoint's flat `rope_theta` + `partial_rotary_factor`, and transformers 5.x's `rope_parameters`;
//   - an explicit `layer_types` list, or `full_attention_interval` (layer i is full attention iff (i+1) % n == 0);
//   - RoPE scaling as `rope_parameters` or `rope_scaling`, its type as `rope_type` or the older `type`.
// Nothing is trusted: every size is bounded (CONFIG_LIMITS) before anything is allocated from it.
import { ConfigError } from './errors.ts';

export type LayerType = 'linear_attention' | 'full_attention';

export interface Qwen3NextConfig {
  vocabSize: number; // V
  hiddenSize: number; // H
  numLayers: number; // L
  layerTypes: LayerType[]; // [L]
  rmsNormEps: number;
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
  // gated attention
  numAttentionHeads: number; // Hq
  numKeyValueHeads: number; // Hkv
  headDim: number; // D
  rotaryDim: number; // R = int(D * partial_rotary_factor)
  ropeTheta: number;
  ropeScaling: RopeScaling; // src/model/rope.ts turns it into inverse frequencies and an attention factor
  // Gated DeltaNet
  linearNumKeyHeads: number; // Hk
  linearNumValueHeads: number; // Hv
  linearKeyHeadDim: number; // dk
  linearValueHeadDim: number; // dv
  convKernel: number; // K
  // MoE
  numExperts: number; // E
  numExpertsPerTok: number; // k
  moeIntermediateSize: number; // I
  sharedExpertIntermediateSize: number; // Is
  normTopkProb: boolean;
  // derived
  keyDim: number; // Hk*dk
  valueDim: number; // Hv*dv
  convDim: number; // 2*keyDim + valueDim
  vPerK: number; // r = Hv/Hk
  eosTokenIds: number[];
  numNextnPredictLayers: number; // MTP layers the checkpoint ships (mtp.*; Qwen3-Next: 1)
}

/** No scaling: HF's default rope. */
export interface DefaultRope {
  type: 'default';
}

/**
 * YaRN (https://arxiv.org/abs/2309.00071) as HF's `_compute_yarn_parameters` reads it. Qwen3-Next's model card
 * enables it for texts past 262,144 tokens with factor 4 and original_max_position_embeddings 262144.
 */
export interface YarnRope {
  type: 'yarn';
  factor: number;
  originalMaxPositionEmbeddings: number;
  betaFast: number; // default 32
  betaSlow: number; // default 1
  attentionFactor?: number; // default: from factor (and mscale / mscaleAllDim when both are set)
  mscale?: number;
  mscaleAllDim?: number;
  truncate: boolean; // default true: the correction range's ends floored / ceiled
}

export type RopeScaling = DefaultRope | YarnRope;

/** The most positions a model with this config was made for: max_position_embeddings, or YaRN's factor x original. */
export function modelContextLimit(c: Pick<Qwen3NextConfig, 'maxPositionEmbeddings' | 'ropeScaling'>): number {
  const r = c.ropeScaling;
  return r.type === 'yarn' ? Math.max(c.maxPositionEmbeddings, Math.floor(r.factor * r.originalMaxPositionEmbeddings)) : c.maxPositionEmbeddings;
}

/**
 * Turn YaRN on or off whatever config.json says (EngineOptions.yarn, the CLI's --yarn): `true` is the model card's
 * recipe, factor 4 over the config's max_position_embeddings; an object sets the factor and the original context.
 * `undefined` keeps the config's. The model card advises YaRN only for texts past the native context.
 */
export type YarnOption = boolean | { factor?: number; originalMaxPositionEmbeddings?: number };

export function withYarn(c: Qwen3NextConfig, yarn: YarnOption | undefined): Qwen3NextConfig {
  if (yarn === undefined) return c;
  if (yarn === false) return { ...c, ropeScaling: { type: 'default' } };
  const given = yarn === true ? {} : yarn;
  const base = c.ropeScaling.type === 'yarn' ? c.ropeScaling : undefined;
  const factor = given.factor ?? base?.factor ?? 4;
  const original = given.originalMaxPositionEmbeddings ?? base?.originalMaxPositionEmbeddings ?? c.maxPositionEmbeddings;
  if (!(factor >= 1 && factor <= 1024)) throw new ConfigError(`yarn.factor must be between 1 and 1024, got ${factor}.`);
  if (!Number.isInteger(original) || original <= 0) throw new ConfigError(`yarn.originalMaxPositionEmbeddings must be a positive integer, got ${original}.`);
  return {
    ...c,
    ropeScaling: { type: 'yarn', betaFast: 32, betaSlow: 1, truncate: true, ...base, factor, originalMaxPositionEmbeddings: original, attentionFactor: given.factor === undefined ? base?.attentionFactor : undefined },
  };
}

type Json = Record<string, unknown>;

/**
 * Upper bounds on config.json's sizes. Far above any real checkpoint (Qwen3-Next-80B-A3B: hidden 2048, 48 layers,
 * 512 experts, vocab 151,936, heads of 256) and low enough that a hostile config cannot make the runtime size
 * buffers from absurd numbers: every allocation the model makes derives from these.
 */
export const CONFIG_LIMITS: Readonly<Record<string, number>> = {
  num_hidden_layers: 512,
  hidden_size: 65_536,
  vocab_size: 1 << 22, // 4,194,304
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 1024,
  linear_num_key_heads: 1024,
  linear_num_value_heads: 1024,
  linear_key_head_dim: 1024,
  linear_value_head_dim: 1024,
  linear_conv_kernel_dim: 64,
  num_experts: 4096,
  num_experts_per_tok: 64,
  moe_intermediate_size: 65_536,
  shared_expert_intermediate_size: 131_072,
  max_position_embeddings: 1 << 24,
  full_attention_interval: 512,
};
/** No weight matrix may hold more than 2^32 weights (16 GiB at f32), nor the whole model more than 2^40. */
export const MAX_MATRIX_WEIGHTS = 2 ** 32;
export const MAX_MODEL_WEIGHTS = 2 ** 40;

/** A short rendering of any value for an error message: never throws (deep or hostile JSON), never huge. */
export function showValue(v: unknown, max = 60): string {
  let s: string;
  try {
    s = typeof v === 'string' ? JSON.stringify(v.slice(0, max + 1)) : (JSON.stringify(v) ?? typeof v);
  } catch {
    s = Array.isArray(v) ? '[...]' : '{...}';
  }
  return s.length > max ? `${s.slice(0, max)}...` : s;
}

function num(c: Json, key: string, fallback?: number): number {
  const v = c[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ConfigError(`config.json: missing "${key}". Use the config.json that ships with the checkpoint.`, 'config.json');
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new ConfigError(`config.json: "${key}" must be a finite number, got ${showValue(v)}. Use the config.json that ships with the checkpoint.`, 'config.json');
  }
  return v;
}

/** A positive integer no larger than its CONFIG_LIMITS entry. */
function posInt(c: Json, key: string, fallback?: number): number {
  const v = num(c, key, fallback);
  const max = CONFIG_LIMITS[key];
  if (!Number.isInteger(v) || v <= 0 || v > max) {
    throw new ConfigError(`config.json: "${key}" must be a positive integer of at most ${max}, got ${v}. Use the config.json that ships with the checkpoint.`, 'config.json');
  }
  return v;
}

/** `v` in [lo, hi], or in (lo, hi] when `openLo`. */
function inRange(key: string, v: number, lo: number, hi: number, openLo = false): number {
  if (v > hi || v < lo || (openLo && v === lo)) {
    throw new ConfigError(`config.json: "${key}" = ${v} is outside ${openLo ? '(' : '['}${lo}, ${hi}]. Use the config.json that ships with the checkpoint.`, 'config.json');
  }
  return v;
}

export function parseConfig(raw: unknown): Qwen3NextConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError('config.json must hold a JSON object.', 'config.json');
  }
  const c = raw as Json;
  if (c.model_type !== undefined && c.model_type !== 'qwen3_next') {
    throw new ConfigError(
      `config.json: model_type is ${showValue(c.model_type)}, this runtime runs "qwen3_next" checkpoints only.`,
      'config.json',
    );
  }
  const numLayers = posInt(c, 'num_hidden_layers');

  let layerTypes: LayerType[];
  if (Array.isArray(c.layer_types)) {
    if (c.layer_types.length !== numLayers) {
      throw new ConfigError(
        `config.json: layer_types has ${c.layer_types.length} entries but num_hidden_layers is ${numLayers}.`,
        'config.json',
      );
    }
    layerTypes = c.layer_types.map((t, i) => {
      if (t !== 'linear_attention' && t !== 'full_attention') {
        throw new ConfigError(`config.json: layer_types[${i}] = ${showValue(t)}; expected "linear_attention" or "full_attention".`, 'config.json');
      }
      return t;
    });
  } else {
    const interval = posInt(c, 'full_attention_interval', 4);
    layerTypes = Array.from({ length: numLayers }, (_, i) => ((i + 1) % interval === 0 ? 'full_attention' : 'linear_attention'));
  }

  const mlpOnly = c.mlp_only_layers;
  if (Array.isArray(mlpOnly) && mlpOnly.length > 0) {
    throw new ConfigError('config.json: mlp_only_layers (dense MLP layers) is not supported; every released Qwen3-Next layer is MoE.', 'config.json');
  }
  const sparseStep = num(c, 'decoder_sparse_step', 1);
  if (sparseStep !== 1) {
    throw new ConfigError(`config.json: decoder_sparse_step = ${sparseStep} is not supported (only 1: every layer MoE).`, 'config.json');
  }

  // rope: transformers 5.x nests it in rope_parameters; the released checkpoint has flat keys and rope_scaling.
  const rope = (typeof c.rope_parameters === 'object' && c.rope_parameters !== null ? c.rope_parameters : {}) as Json;
  const ropeTheta = inRange('rope_theta', rope.rope_theta !== undefined ? num(rope, 'rope_theta') : num(c, 'rope_theta', 10000), 0, 1e12, true);
  const partialValue = rope.partial_rotary_factor !== undefined ? num(rope, 'partial_rotary_factor') : num(c, 'partial_rotary_factor', 0.25);
  const maxPositionEmbeddings = posInt(c, 'max_position_embeddings', 262144);
  const ropeScaling = parseRopeScaling(rope, c.rope_scaling, maxPositionEmbeddings);
  const partial = inRange('partial_rotary_factor', partialValue, 0, 1);

  const hiddenSize = posInt(c, 'hidden_size');
  const numAttentionHeads = posInt(c, 'num_attention_heads');
  const numKeyValueHeads = posInt(c, 'num_key_value_heads');
  const headDim = posInt(c, 'head_dim', hiddenSize / numAttentionHeads);
  const rotaryDim = Math.floor(headDim * partial);
  if (rotaryDim % 2 !== 0 || rotaryDim > headDim) {
    throw new ConfigError(`config.json: rotary dims int(head_dim * partial_rotary_factor) = ${rotaryDim} must be even and <= head_dim.`, 'config.json');
  }
  if (numAttentionHeads % numKeyValueHeads !== 0) {
    throw new ConfigError(`config.json: num_attention_heads (${numAttentionHeads}) must be a multiple of num_key_value_heads (${numKeyValueHeads}).`, 'config.json');
  }
  const linearNumKeyHeads = posInt(c, 'linear_num_key_heads');
  const linearNumValueHeads = posInt(c, 'linear_num_value_heads');
  if (linearNumValueHeads % linearNumKeyHeads !== 0) {
    throw new ConfigError(`config.json: linear_num_value_heads (${linearNumValueHeads}) must be a multiple of linear_num_key_heads (${linearNumKeyHeads}).`, 'config.json');
  }
  const linearKeyHeadDim = posInt(c, 'linear_key_head_dim');
  const linearValueHeadDim = posInt(c, 'linear_value_head_dim');
  const numExperts = posInt(c, 'num_experts');
  const numExpertsPerTok = posInt(c, 'num_experts_per_tok');
  if (numExpertsPerTok > numExperts) {
    throw new ConfigError(`config.json: num_experts_per_tok (${numExpertsPerTok}) exceeds num_experts (${numExperts}).`, 'config.json');
  }
  const vocabSize = posInt(c, 'vocab_size');
  const moeIntermediateSize = posInt(c, 'moe_intermediate_size');
  const sharedExpertIntermediateSize = posInt(c, 'shared_expert_intermediate_size');
  const eos = c.eos_token_id;
  const eosTokenIds = (Array.isArray(eos) ? eos : [eos]).filter((x): x is number => Number.isInteger(x) && x >= 0 && x < vocabSize);

  const keyDim = linearNumKeyHeads * linearKeyHeadDim;
  const valueDim = linearNumValueHeads * linearValueHeadDim;
  // Each size is bounded above; their products size the buffers, so bound those too.
  const projRows = Math.max(2 * keyDim + 2 * valueDim + 2 * linearNumValueHeads, numAttentionHeads * 2 * headDim + 2 * numKeyValueHeads * headDim);
  checkWeights('the embedding (vocab_size x hidden_size)', vocabSize * hiddenSize, MAX_MATRIX_WEIGHTS);
  checkWeights('an attention or linear-attention input projection', projRows * hiddenSize, MAX_MATRIX_WEIGHTS);
  checkWeights('an expert or shared-expert gate/up projection', 2 * Math.max(moeIntermediateSize, sharedExpertIntermediateSize) * hiddenSize, MAX_MATRIX_WEIGHTS);
  const perLayer = hiddenSize * (projRows + 3 * numExperts * moeIntermediateSize + 3 * sharedExpertIntermediateSize);
  checkWeights('the model', 2 * vocabSize * hiddenSize + numLayers * perLayer, MAX_MODEL_WEIGHTS);
  return {
    vocabSize,
    hiddenSize,
    numLayers,
    layerTypes,
    rmsNormEps: inRange('rms_norm_eps', num(c, 'rms_norm_eps', 1e-6), 0, 1, true),
    tieWordEmbeddings: c.tie_word_embeddings === true,
    maxPositionEmbeddings,
    numAttentionHeads,
    numKeyValueHeads,
    headDim,
    rotaryDim,
    ropeTheta,
    ropeScaling,
    linearNumKeyHeads,
    linearNumValueHeads,
    linearKeyHeadDim,
    linearValueHeadDim,
    convKernel: posInt(c, 'linear_conv_kernel_dim', 4),
    numExperts,
    numExpertsPerTok,
    moeIntermediateSize,
    sharedExpertIntermediateSize,
    normTopkProb: c.norm_topk_prob !== false,
    keyDim,
    valueDim,
    convDim: 2 * keyDim + valueDim,
    vPerK: linearNumValueHeads / linearNumKeyHeads,
    eosTokenIds,
    numNextnPredictLayers: c.num_nextn_predict_layers === undefined || c.num_nextn_predict_layers === null ? 0 : inRange('num_nextn_predict_layers', num(c, 'num_nextn_predict_layers'), 0, 8),
  };
}

/** The rope type from rope_parameters, else rope_scaling (`rope_type`, or `type` in older configs), and YaRN's fields. */
function parseRopeScaling(params: Json, scaling: unknown, maxPositions: number): RopeScaling {
  const typeOf = (d: Json) => d.rope_type ?? d.type;
  const sc = (typeof scaling === 'object' && scaling !== null && !Array.isArray(scaling) ? scaling : {}) as Json;
  const d = typeOf(params) !== undefined ? params : sc;
  const type = typeOf(d) ?? 'default';
  if (type === 'default') return { type };
  if (type !== 'yarn') {
    throw new ConfigError(`config.json: rope type ${showValue(type)} is not supported (only "default" and "yarn").`, 'config.json');
  }
  const key = (k: string) => `rope_scaling.${k}`;
  const opt = (k: string, positive = true) => (d[k] === undefined || d[k] === null ? undefined : inRange(key(k), num(d, k), 0, 1e9, positive));
  const original = num(d, 'original_max_position_embeddings');
  if (!Number.isInteger(original) || original <= 0 || original > 1 << 26) {
    throw new ConfigError(`config.json: "${key('original_max_position_embeddings')}" must be a positive integer, got ${original}.`, 'config.json');
  }
  // HF: a missing factor is max_position_embeddings / original_max_position_embeddings
  const factor = inRange(key('factor'), d.factor === undefined || d.factor === null ? maxPositions / original : num(d, 'factor'), 1, 1024);
  return {
    type, factor, originalMaxPositionEmbeddings: original,
    betaFast: opt('beta_fast', false) || 32, betaSlow: opt('beta_slow', false) || 1, // HF: `or 32`, `or 1`
    attentionFactor: opt('attention_factor'), mscale: opt('mscale'), mscaleAllDim: opt('mscale_all_dim'),
    truncate: d.truncate !== false,
  };
}

function checkWeights(what: string, weights: number, max: number): void {
  if (weights > max) {
    throw new ConfigError(
      `config.json: ${what} would hold ${weights.toExponential(2)} weights, over this runtime's limit of 2^${Math.log2(max)}. Use the config.json that ships with the checkpoint.`,
      'config.json',
    );
  }
}
