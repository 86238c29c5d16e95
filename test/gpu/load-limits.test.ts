// Model shapes the GPU kernels cannot run fail at load with a typed error that names the limit, instead of loading
// and then computing garbage. Sizes fixed in the kernels (head_dim, conv width, ...) are refused from config.json
// with ConfigError before any record is read; a shape past this device's limits (here hidden_size wide enough that
// the MoE GEMV's staged input row needs more workgroup memory than the device gives) fails with DeviceLimitError,
// which WebGPU reports only to an error scope. Weights are zeros from a synthetic source: only the shapes matter.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { ConfigError, ContextLengthError, DeviceLimitError } from '../../src/errors.ts';
import { GpuContext } from '../../src/gpu/context.ts';
import { Qwen3NextGpuModel } from '../../src/model/model.ts';
import { expertLayout, QUANT_F32, type TensorPlan, type WeightSource } from '../../src/format/pack.ts';
import { packedWords } from '../../src/quant/formats.ts';
import { REPO_ROOT } from '../helpers/fixtures.ts';
import { withGpuErrors } from '../helpers/gpu.ts';

/** The tiny fixture's config with `changes`, two layers, all-zero weights; `reads` counts the records read. */
function zeroSource(changes: Record<string, unknown>): WeightSource & { reads: number } {
  const raw = JSON.parse(readFileSync(join(REPO_ROOT, 'test/fixtures/tiny/config.json'), 'utf8'));
  const config = parseConfig({ ...raw, num_hidden_layers: 2, layer_types: ['linear_attention', 'full_attention'], ...changes });
  const src = {
    config,
    quant: QUANT_F32,
    reads: 0,
    dense: async (t: TensorPlan) => (src.reads++, new Uint32Array(packedWords(t.format, t.N, t.K))),
    expert: async () => (src.reads++, new Uint32Array(expertLayout(config, QUANT_F32.experts).words)),
  };
  return src;
}

describe('load-time kernel limits', () => {
  // Sizes the kernels fix at compile time: refused from config.json alone, before a single record is read.
  for (const [what, changes, pattern] of [
    ['head_dim 40 (attention needs a multiple of 16)', { head_dim: 40 }, /head_dim 40 must be a multiple of 16/],
    ['linear_value_head_dim 18 (the chunked GDN needs multiples of 4)', { linear_value_head_dim: 18 }, /dv 18 must be multiples of 4/],
    ['linear_conv_kernel_dim 12 (conv taps live in registers, at most 8)', { linear_conv_kernel_dim: 12 }, /kernel width 12 outside 2\.\.8/],
  ] as const) {
    it(`${what}: ConfigError before any weight is read`, () =>
      withGpuErrors(async (device) => {
        const src = zeroSource(changes);
        const err = await Qwen3NextGpuModel.load(new GpuContext(device), src, { maxContext: 16 }).then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(ConfigError);
        expect((err as Error).message).toMatch(pattern);
        expect((err as Error).message).toMatch(/^config\.json: this runtime's GPU kernels cannot run this model/);
        expect(src.reads, 'records read').toBe(0);
      }));
  }

  it('hidden_size past the workgroup memory of the MoE GEMV: DeviceLimitError at load, with the limit in the message', () =>
    withGpuErrors(async (device) => {
      const limit = device.limits.maxComputeWorkgroupStorageSize;
      // the decode GEMVs (gemv.wgsl, moe.wgsl) stage an input row of H floats in workgroup memory
      const H = 32 * (Math.ceil(limit / 4 / 32) + 1);
      const load = Qwen3NextGpuModel.load(new GpuContext(device), zeroSource({ hidden_size: H }), { maxContext: 16, maxTokensPerStep: 4 });
      const err = await load.then(() => undefined, (e: unknown) => e);
      expect(err, `H = ${H} must not load with ${limit} bytes of workgroup memory`).toBeInstanceOf(DeviceLimitError);
      expect((err as DeviceLimitError).reason).toBe('limits');
      const message = (err as Error).message;
      console.log(`[load-limits] H = ${H}, workgroup memory ${limit} B: ${message.slice(0, 300)}`);
      expect(message).toMatch(/cannot run the model's kernels at this shape/);
      expect(message).toMatch(/workgroup/i);
    }));

  it('a maxContext whose K/V cache of a layer passes one storage binding: ContextLengthError with the most this device holds, nothing read', () =>
    withGpuErrors(async (device) => {
      const binding = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
      // 4 kv heads x 256 dims: 2 KiB a token and layer in f16, so even a 4 GiB binding stays under 2^24 positions
      const src = zeroSource({ max_position_embeddings: 1 << 24, num_key_value_heads: 4, num_attention_heads: 8, head_dim: 256 });
      const maxContext = Math.floor(binding / 2048) + 1;
      const err = await Qwen3NextGpuModel.load(new GpuContext(device), src, { maxContext }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(ContextLengthError);
      expect((err as ContextLengthError).limit).toBe(maxContext - 1);
      expect((err as Error).message).toMatch(/over this device's largest storage binding of \d+ MiB: at most [\d,]+ tokens here\. Lower maxContext\./);
      const f32 = await Qwen3NextGpuModel.load(new GpuContext(device), src, { maxContext, kvCache: 'f32' }).then(() => undefined, (e: unknown) => e);
      expect((f32 as ContextLengthError).limit).toBe(Math.floor(binding / 4096));
      expect((f32 as Error).message).toMatch(/with kvCache 'f16'\)/);
      expect(src.reads, 'records read').toBe(0);
    }));
});
