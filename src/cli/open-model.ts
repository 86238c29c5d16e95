// Load a model for a CLI command from --model (a Hugging Face checkpoint folder, quantized while loading, or a
// packed model folder written by `q3n convert`, used as stored) and --weights.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint } from '../checkpoint/checkpoint.ts';
import { nodeFileSet } from '../checkpoint/node-files.ts';
import { GpuContext } from '../gpu/context.ts';
import { requestNodeDevice } from '../gpu/node-device.ts';
import { Qwen3NextGpuModel } from '../model/model.ts';
import { expertStats, loadModel } from '../cache/load.ts';
import { QUANT_F32, QUANT_INT4 } from '../format/pack.ts';
import { NodeFileStore } from '../store/node.ts';
import { storeSource } from '../store/store.ts';
import { UsageError, type Args } from './args.ts';
import type { YarnOption } from '../config.ts';

/** The options openModel reads, for each command's args.allow(). */
export const MODEL_OPTIONS = ['model', 'weights', 'expert-cache-bytes', 'cache-aware-routing', 'max-context', 'yarn', 'kv-cache', 'activations'];

export const MODEL_USAGE = `options of logits, generate and perplexity:
  --weights f32|int4        quantize a HF checkpoint while loading (packed models are already quantized)
  --expert-cache-bytes N    GPU bytes for routed experts (packed models): experts stream from disk when they do not fit
  --cache-aware-routing N   with streamed experts: a token keeps its N best picks, the rest come from experts already
                            on the GPU where its router's are not (approximate: fewer uploads, another model)
  --max-context N           tokens of context to allocate (default: min(model's, 4096))
  --yarn on|off|FACTOR      YaRN rope scaling whatever config.json says: on = factor 4 over max_position_embeddings
                            (the model card's recipe for texts past the native context); default: the config's
  --kv-cache f16|f32        K/V cache precision (default f16: half the memory; f32: exact)
  --activations int8|f32    prefill GEMMs of int4 weights on int8 activations (default, where WGSL has packed dot
                            products) or on f32 ones (exact to the weights)`;

/** --yarn: on, off, or a factor. */
function yarnOption(args: Args): YarnOption | undefined {
  if (!args.has('yarn')) return undefined;
  const v = args.str('yarn');
  if (v === 'on' || v === 'off') return v === 'on';
  const factor = Number(v);
  if (!(factor >= 1)) throw new UsageError(`--yarn must be on, off or a factor >= 1, got "${v}"`);
  return { factor };
}

/** `mtp`: load the multi-token-prediction layer too (speculative decoding), when the model has one. */
export async function openModel(args: Args, extra: { mtp?: boolean } = {}) {
  const dir = args.str('model');
  const expertCacheBytes = args.has('expert-cache-bytes') ? Number(args.str('expert-cache-bytes')) : undefined;
  if (expertCacheBytes !== undefined && !(expertCacheBytes > 0)) throw new UsageError('--expert-cache-bytes must be a positive number of bytes');
  const exact = args.has('cache-aware-routing') ? args.num('cache-aware-routing') : undefined;
  if (exact !== undefined && expertCacheBytes === undefined) throw new UsageError('--cache-aware-routing needs --expert-cache-bytes (experts that stream)');
  const maxContext = args.has('max-context') ? args.num('max-context') : undefined;
  if (maxContext !== undefined && !(Number.isInteger(maxContext) && maxContext > 0)) throw new UsageError('--max-context must be a positive number of tokens');
  const kvCache = args.str('kv-cache', 'f16');
  if (kvCache !== 'f16' && kvCache !== 'f32') throw new UsageError(`--kv-cache must be f16 or f32, got "${kvCache}"`);
  const common = { maxContext, yarn: yarnOption(args), kvCache: kvCache as 'f16' | 'f32', mtp: extra.mtp };
  const activations = args.str('activations', 'int8');
  if (activations !== 'int8' && activations !== 'f32') throw new UsageError(`--activations must be int8 or f32, got "${activations}"`);
  const ctx = new GpuContext(await requestNodeDevice(), { int8Matmul: activations === 'int8' });
  // A Hugging Face checkpoint has config.json; a packed model keeps its config inside manifest.json.
  if (!existsSync(join(dir, 'config.json')) && existsSync(join(dir, 'manifest.json'))) {
    if (args.has('weights')) throw new UsageError(`${dir} is a packed model: its weights are already quantized (drop --weights)`);
    const store = await NodeFileStore.open(dir);
    const model = await loadModel(ctx, await storeSource(store), { ...common, expertCacheBytes, cacheAwareRouting: exact === undefined ? undefined : { exact } });
    if (!expertStats(model)) await store.close(); // every weight is on the GPU now; a streaming model keeps reading
    return { ctx, model };
  }
  if (expertCacheBytes !== undefined) throw new UsageError('--expert-cache-bytes needs a packed model (`q3n convert`)');
  const weights = args.str('weights', 'f32');
  if (weights !== 'f32' && weights !== 'int4') throw new UsageError(`--weights must be f32 or int4, got "${weights}"`);
  const ckpt = await Checkpoint.open(nodeFileSet(dir));
  const model = await Qwen3NextGpuModel.fromCheckpoint(ctx, ckpt, { ...common, quant: weights === 'int4' ? QUANT_INT4 : QUANT_F32 });
  return { ctx, model };
}
