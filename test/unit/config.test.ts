import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { modelContextLimit, parseConfig } from '../../src/config.ts';
import { ConfigError } from '../../src/errors.ts';
import { locatePreset } from '../helpers/fixtures.ts';

const tiny = () => JSON.parse(readFileSync(join(locatePreset('tiny')!.dir, 'config.json'), 'utf8'));

describe('config.json', () => {
  it('the released flat form: rope_theta + partial_rotary_factor, explicit layer_types', () => {
    const c = parseConfig(tiny());
    expect([c.ropeTheta, c.rotaryDim, c.convDim, c.vPerK]).toEqual([10000, 8, 128, 2]);
    expect(c.layerTypes).toEqual(['linear_attention', 'linear_attention', 'linear_attention', 'full_attention']);
  });
  it('transformers 5.x rope_parameters and full_attention_interval instead of layer_types', () => {
    const raw = tiny();
    delete raw.rope_theta; delete raw.partial_rotary_factor; delete raw.layer_types;
    raw.rope_parameters = { rope_type: 'default', rope_theta: 1e7, partial_rotary_factor: 0.5 };
    raw.num_hidden_layers = 8; raw.full_attention_interval = 4;
    const c = parseConfig(raw);
    expect([c.ropeTheta, c.rotaryDim]).toEqual([1e7, 16]);
    expect(c.layerTypes.map((t) => t[0])).toEqual(['l', 'l', 'l', 'f', 'l', 'l', 'l', 'f']);
  });
  it('YaRN from rope_scaling (rope_type or the older type) or rope_parameters, with HF\'s defaults', () => {
    const yarn = { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 64, betaFast: 32, betaSlow: 1, truncate: true, attentionFactor: undefined, mscale: undefined, mscaleAllDim: undefined };
    for (const key of ['rope_type', 'type']) {
      const c = parseConfig({ ...tiny(), max_position_embeddings: 128, rope_scaling: { [key]: 'yarn', factor: 4, original_max_position_embeddings: 64 } });
      expect(c.ropeScaling).toEqual(yarn);
      expect(modelContextLimit(c)).toBe(256); // max(max_position_embeddings 128, 4 x 64)
    }
    const nested = parseConfig({ ...tiny(), rope_parameters: { rope_type: 'yarn', rope_theta: 1e6, factor: 4, original_max_position_embeddings: 262144, beta_fast: 0, truncate: false } });
    expect(nested.ropeTheta).toBe(1e6);
    expect(nested.ropeScaling).toEqual({ ...yarn, originalMaxPositionEmbeddings: 262144, truncate: false }); // beta_fast 0: HF's `or 32`
    expect(modelContextLimit(nested)).toBe(1048576);
    // no factor: max_position_embeddings / original_max_position_embeddings, as HF
    expect(parseConfig({ ...tiny(), max_position_embeddings: 256, rope_scaling: { type: 'yarn', original_max_position_embeddings: 64 } }).ropeScaling).toMatchObject({ factor: 4 });
    const plain = parseConfig({ ...tiny(), rope_scaling: null });
    expect(plain.ropeScaling).toEqual({ type: 'default' });
    expect(modelContextLimit(plain)).toBe(plain.maxPositionEmbeddings);
  });
  it('values we cannot run are refused with the field named', () => {
    for (const [edit, msg] of [
      [(c: any) => (c.num_hidden_layers = 0), /num_hidden_layers/],
      [(c: any) => (c.layer_types = ['linear_attention']), /layer_types has 1 entries/],
      [(c: any) => (c.linear_num_value_heads = 3), /multiple of linear_num_key_heads/],
      [(c: any) => (c.rope_scaling = { rope_type: 'dynamic', factor: 2 }), /rope type "dynamic" is not supported \(only "default" and "yarn"\)/],
      [(c: any) => (c.rope_scaling = { type: 'linear', factor: 2 }), /rope type "linear"/],
      [(c: any) => (c.rope_scaling = { rope_type: 'yarn', factor: 4 }), /missing "original_max_position_embeddings"/],
      [(c: any) => (c.rope_scaling = { rope_type: 'yarn', factor: 0.5, original_max_position_embeddings: 64 }), /"rope_scaling.factor" = 0.5 is outside \[1, 1024\]/],
      [(c: any) => (c.rope_scaling = { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 6.5 }), /original_max_position_embeddings" must be a positive integer/],
      [(c: any) => (c.rope_scaling = { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 64, beta_fast: -1 }), /"rope_scaling.beta_fast" = -1/],
      [(c: any) => (c.mlp_only_layers = [1]), /mlp_only_layers/],
      [(c: any) => delete c.hidden_size, /missing "hidden_size"/],
      [(c: any) => (c.hidden_size = 65537), /"hidden_size" must be a positive integer of at most 65536/],
      [(c: any) => (c.num_hidden_layers = 2 ** 24), /at most 512/],
      [(c: any) => ((c.vocab_size = 2 ** 22), (c.hidden_size = 2 ** 12)), /embedding .* over this runtime's limit of 2\^32/],
      [(c: any) => ((c.num_experts = 4096), (c.moe_intermediate_size = 65536), (c.hidden_size = 4096), (c.num_hidden_layers = 512), delete c.layer_types), /limit of 2\^40/],
      [(c: any) => (c.partial_rotary_factor = -0.25), /"partial_rotary_factor" = -0.25 is outside \[0, 1\]/],
      [(c: any) => (c.rms_norm_eps = 0), /"rms_norm_eps"/],
      [(c: any) => (c.model_type = { toString: 1 }), /model_type is \{"toString":1\}/],
      [(c: any) => (c.head_dim = JSON.parse('['.repeat(100_000) + ']'.repeat(100_000))), /"head_dim" must be a finite number, got \[\.\.\.\]/],
    ] as const) {
      const raw = tiny();
      edit(raw);
      expect(() => parseConfig(raw)).toThrow(ConfigError);
      expect(() => parseConfig(raw)).toThrow(msg);
    }
  });
  it('the real Qwen3-Next-80B-A3B sizes fit the limits', () => {
    const c = parseConfig({ ...tiny(), hidden_size: 2048, vocab_size: 151936, num_hidden_layers: 48, layer_types: undefined, num_attention_heads: 16,
      num_key_value_heads: 2, head_dim: 256, linear_num_key_heads: 16, linear_num_value_heads: 32, linear_key_head_dim: 128, linear_value_head_dim: 128,
      num_experts: 512, num_experts_per_tok: 10, moe_intermediate_size: 512, shared_expert_intermediate_size: 512, max_position_embeddings: 262144 });
    expect([c.numLayers, c.numExperts, c.vocabSize]).toEqual([48, 512, 151936]);
  });
});
