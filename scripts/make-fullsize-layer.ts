// A synthetic Hugging Face checkpoint with the real Qwen3-Next-80B-A3B config names and shapes (hidden 2048,
// 512 experts of 512, GDN 16/32 heads x 128, attention 16/2 x 256, vocab 151936) but only a few layers, to
// prove `q3n convert` and the loader at full size without downloading 160 GB. bf16 values from a fast PRNG,
// written as sharded safetensors (<= 4 GB a shard) + model.safetensors.index.json, streamed in 8 MiB chunks.
// Layers are linear attention except the last, which is full attention (4 layers = the real pattern).
//
//   npx tsx scripts/make-fullsize-layer.ts --out /tmp/q3n-full --layers 2      (~7.6 GB)
//   npx tsx scripts/make-fullsize-layer.ts --out /tmp/q3n-small --small --max-shard-bytes 100000
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Args } from '../src/cli/args.ts';

export interface MakeOptions {
  layers: number;
  /** A small config with the same names and structure (for tests). */
  small?: boolean;
  maxShardBytes?: number;
  seed?: number;
}

export function syntheticConfig(layers: number, small = false): Record<string, unknown> {
  const dims = small
    ? { hidden_size: 64, vocab_size: 1000, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 32, linear_num_key_heads: 2, linear_num_value_heads: 4, linear_key_head_dim: 16, linear_value_head_dim: 16, num_experts: 8, num_experts_per_tok: 2, moe_intermediate_size: 16, shared_expert_intermediate_size: 16, intermediate_size: 160 }
    : { hidden_size: 2048, vocab_size: 151936, num_attention_heads: 16, num_key_value_heads: 2, head_dim: 256, linear_num_key_heads: 16, linear_num_value_heads: 32, linear_key_head_dim: 128, linear_value_head_dim: 128, num_experts: 512, num_experts_per_tok: 10, moe_intermediate_size: 512, shared_expert_intermediate_size: 512, intermediate_size: 5120 };
  return {
    architectures: ['Qwen3NextForCausalLM'],
    model_type: 'qwen3_next',
    ...dims,
    num_hidden_layers: layers,
    layer_types: Array.from({ length: layers }, (_, i) => (layers > 1 && (i === layers - 1 || (i + 1) % 4 === 0) ? 'full_attention' : 'linear_attention')),
    full_attention_interval: 4,
    partial_rotary_factor: 0.25,
    rope_theta: 10000000,
    rope_scaling: null,
    linear_conv_kernel_dim: 4,
    norm_topk_prob: true,
    decoder_sparse_step: 1,
    mlp_only_layers: [],
    rms_norm_eps: 1e-6,
    hidden_act: 'silu',
    attention_bias: false,
    tie_word_embeddings: false,
    max_position_embeddings: 262144,
    bos_token_id: 151643,
    eos_token_id: 151645,
    torch_dtype: 'bfloat16',
  };
}

interface Spec {
  name: string;
  shape: number[];
}

/** Every tensor of the checkpoint, in the order the real one lists them, mtp.* included (the converter skips them). */
export function checkpointTensors(c: Record<string, number>, layerTypes: string[]): Spec[] {
  const H = c.hidden_size, D = c.head_dim, I = c.moe_intermediate_size, Is = c.shared_expert_intermediate_size;
  const keyDim = c.linear_num_key_heads * c.linear_key_head_dim, valueDim = c.linear_num_value_heads * c.linear_value_head_dim;
  const out: Spec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocab_size, H] }];
  const t = (name: string, ...shape: number[]) => out.push({ name, shape });
  layerTypes.forEach((type, i) => {
    const p = `model.layers.${i}`;
    t(`${p}.input_layernorm.weight`, H);
    if (type === 'linear_attention') {
      const a = `${p}.linear_attn`;
      t(`${a}.in_proj_qkvz.weight`, 2 * keyDim + 2 * valueDim, H);
      t(`${a}.in_proj_ba.weight`, 2 * c.linear_num_value_heads, H);
      t(`${a}.conv1d.weight`, 2 * keyDim + valueDim, 1, c.linear_conv_kernel_dim);
      t(`${a}.A_log`, c.linear_num_value_heads);
      t(`${a}.dt_bias`, c.linear_num_value_heads);
      t(`${a}.norm.weight`, c.linear_value_head_dim);
      t(`${a}.out_proj.weight`, H, valueDim);
    } else {
      const s = `${p}.self_attn`;
      t(`${s}.q_proj.weight`, c.num_attention_heads * D * 2, H);
      t(`${s}.k_proj.weight`, c.num_key_value_heads * D, H);
      t(`${s}.v_proj.weight`, c.num_key_value_heads * D, H);
      t(`${s}.o_proj.weight`, H, c.num_attention_heads * D);
      t(`${s}.q_norm.weight`, D);
      t(`${s}.k_norm.weight`, D);
    }
    const m = `${p}.mlp`;
    t(`${m}.gate.weight`, c.num_experts, H);
    for (let e = 0; e < c.num_experts; e++) {
      t(`${m}.experts.${e}.gate_proj.weight`, I, H);
      t(`${m}.experts.${e}.up_proj.weight`, I, H);
      t(`${m}.experts.${e}.down_proj.weight`, H, I);
    }
    t(`${m}.shared_expert.gate_proj.weight`, Is, H);
    t(`${m}.shared_expert.up_proj.weight`, Is, H);
    t(`${m}.shared_expert.down_proj.weight`, H, Is);
    t(`${m}.shared_expert_gate.weight`, 1, H);
    t(`${p}.post_attention_layernorm.weight`, H);
  });
  t('model.norm.weight', H);
  t('lm_head.weight', c.vocab_size, H);
  t('mtp.fc.weight', H, 2 * H);
  t('mtp.pre_fc_norm_embedding.weight', H);
  t('mtp.pre_fc_norm_hidden.weight', H);
  t('mtp.norm.weight', H);
  return out;
}

const byteLength = (s: Spec) => s.shape.reduce((a, b) => a * b, 1) * 2;

/** FNV-1a of the name, so a tensor's values do not depend on which shard it lands in. */
function seedOf(name: string, seed: number): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0 || 1;
}

const CHUNK_WORDS = 2 << 20; // 8 MiB

/** Streams one tensor's bf16 values: each xorshift32 word gives two, of magnitude in [2^-9, 2^-5) with a random sign. */
async function writeTensor(fh: Awaited<ReturnType<typeof open>>, spec: Spec, seed: number, chunk: Uint32Array) {
  let x = seedOf(spec.name, seed);
  for (let left = byteLength(spec); left > 0; ) {
    const n = Math.min(chunk.length, Math.ceil(left / 4));
    for (let i = 0; i < n; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      const lo = (x & 0x807f) | ((118 + ((x >>> 7) & 3)) << 7);
      const hi = ((x >>> 16) & 0x807f) | ((118 + ((x >>> 23) & 3)) << 7);
      chunk[i] = lo | (hi << 16);
    }
    const bytes = Math.min(left, n * 4);
    await fh.write(new Uint8Array(chunk.buffer, 0, bytes));
    left -= bytes;
  }
}

async function writeShard(path: string, specs: Spec[], seed: number, chunk: Uint32Array) {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const s of specs) {
    header[s.name] = { dtype: 'BF16', shape: s.shape, data_offsets: [offset, offset + byteLength(s)] };
    offset += byteLength(s);
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const head = new Uint8Array(8 + Math.ceil(json.length / 8) * 8).fill(0x20);
  new DataView(head.buffer).setBigUint64(0, BigInt(head.length - 8), true);
  head.set(json, 8);
  const fh = await open(path, 'w');
  try {
    await fh.write(head);
    for (const s of specs) await writeTensor(fh, s, seed, chunk);
  } finally {
    await fh.close();
  }
}

export async function makeCheckpoint(dir: string, opts: MakeOptions): Promise<{ shards: string[]; bytes: number }> {
  const config = syntheticConfig(opts.layers, opts.small);
  const specs = checkpointTensors(config as Record<string, number>, config.layer_types as string[]);
  const max = opts.maxShardBytes ?? 4e9;
  const groups: Spec[][] = [[]];
  let size = 0;
  for (const s of specs) {
    if (size > 0 && size + byteLength(s) > max) { groups.push([]); size = 0; }
    groups[groups.length - 1].push(s);
    size += byteLength(s);
  }
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const pad = (i: number) => String(i).padStart(5, '0');
  const shards = groups.map((_, i) => `model-${pad(i + 1)}-of-${pad(groups.length)}.safetensors`);
  const chunk = new Uint32Array(CHUNK_WORDS);
  const weightMap: Record<string, string> = {};
  for (const [i, g] of groups.entries()) {
    await writeShard(join(dir, shards[i]), g, opts.seed ?? 0, chunk);
    for (const s of g) weightMap[s.name] = shards[i];
  }
  const bytes = specs.reduce((n, s) => n + byteLength(s), 0);
  await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: bytes }, weight_map: weightMap }, null, 2));
  return { shards, bytes };
}

async function main() {
  const args = new Args(process.argv.slice(2), new Set(['small'])).allow(['out', 'layers', 'small', 'max-shard-bytes', 'seed']);
  const layers = args.num('layers', 1);
  if (!Number.isInteger(layers) || layers < 1 || layers > 48) throw new Error('--layers must be 1..48 (1-4 is what fits a test disk)');
  const out = args.str('out');
  const t0 = performance.now();
  const { shards, bytes } = await makeCheckpoint(out, { layers, small: args.flag('small'), maxShardBytes: args.num('max-shard-bytes', 4e9), seed: args.num('seed', 0) });
  console.log(`wrote ${out}: ${layers} layers, ${shards.length} shards, ${(bytes / 1e9).toFixed(2)} GB in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
