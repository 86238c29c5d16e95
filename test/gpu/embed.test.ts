import { describe, it } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { embed } from '../../src/kernels/embed.ts';

import { packWeight, unpackWeight, type WeightFormat } from '../../src/quant/formats.ts';
import { withGpuErrors, poisoned, uploadWeights } from '../helpers/gpu.ts';
import { expectClose } from '../helpers/compare.ts';
import { randn } from '../helpers/random.ts';

describe('embedding gather', () => {
  // Odd H (q4/q8 tail group, f16 padding half); tables behind a first weight so they sit at an offset.
  for (const format of ['f32', 'f16', 'q4', 'q8'] as WeightFormat[]) {
    for (const [V, H] of [[50, 77], [300, 256]]) {
      it(`${format} V=${V} H=${H}, repeated and out-of-range ids`, () =>
        withGpuErrors(async (device) => {
          const ctx = new GpuContext(device);
          const w = randn(V * H, V + H, 0.5);
          const [, table] = uploadWeights(ctx, [{ w: randn(7 * 5, 1), N: 7, K: 5, format }, { w, N: V, K: H, format }], 'tables');
          const seen = unpackWeight(packWeight(w, V, H, format), V, H, format);
          const ids = [3, 0, V - 1, 3, V, 17 % V, 0xffffffff];
          const want = new Float32Array(ids.length * H);
          ids.forEach((id, t) => { if (id < V) want.set(seen.subarray(id * H, id * H + H), t * H); });
          const out = poisoned(device, ids.length * H * 4);
          ctx.run([embed(ctx, ctx.upload(new Uint32Array(ids), 'ids'), table, out, ids.length)]);
          // q4/q8: the GPU may fuse q·scale + min into one FMA where the CPU rounds twice.
          expectClose(`embed ${format}`, await ctx.readF32(out, ids.length * H), want, { rel: 1e-6 });
        }));
    }
  }
});
