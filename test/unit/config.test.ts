import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../../src/config.ts';
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
  it('values we cannot run are refused with the field named', () => {
    for (const [edit, msg] of [
      [(c: any) => (c.num_hidden_layers = 0), /num_hidden_layers/],
      [(c: any) => (c.layer_types = ['linear_attention']), /layer_types has 1 entries/],
      [(c: any) => (c.linear_num_value_heads = 3), /multiple of linear_num_key_heads/],
      [(c: any) => (c.rope_scaling = { rope_type: 'yarn' }), /rope type "yarn"/],
      [(c: any) => (c.mlp_only_layers = [1]), /mlp_only_layers/],
      [(c: any) => delete c.hidden_size, /missing "hidden_size"/],
    ] as const) {
      const raw = tiny();
      edit(raw);
      expect(() => parseConfig(raw)).toThrow(ConfigError);
      expect(() => parseConfig(raw)).toThrow(msg);
    }
  });
});
