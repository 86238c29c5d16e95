// Load a model for a CLI command from --model and --weights.
import { Checkpoint } from '../checkpoint/checkpoint.ts';
import { nodeFileSet } from '../checkpoint/node-files.ts';
import { GpuContext } from '../gpu/context.ts';
import { requestNodeDevice } from '../gpu/node-device.ts';
import { Qwen3NextGpuModel } from '../model/model.ts';
import { QUANT_F32, QUANT_INT4 } from '../model/pack.ts';
import { UsageError, type Args } from './args.ts';

export async function openModel(args: Args) {
  const weights = args.str('weights', 'f32');
  if (weights !== 'f32' && weights !== 'int4') throw new UsageError(`--weights must be f32 or int4, got "${weights}"`);
  const ckpt = await Checkpoint.open(nodeFileSet(args.str('model')));
  const ctx = new GpuContext(await requestNodeDevice());
  const model = await Qwen3NextGpuModel.fromCheckpoint(ctx, ckpt, { quant: weights === 'int4' ? QUANT_INT4 : QUANT_F32 });
  return { ckpt, ctx, model };
}
