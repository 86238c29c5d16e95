// Decode one step ahead (Qwen3NextGpuModel.submitToken, as the engine runs it): step n+1 embeds the id step n's
// sampler left on the GPU and is queued before token n is read. It must give the lockstep nextToken loop's ids,
// greedy and sampled (seeded top-k/top-p), and leave the same state: after the loop both feed the last id, then one
// more token's logits must be identical. The tiny fixture's random weights make sampled ids vary.
import { describe, expect, it } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { Qwen3NextGpuModel } from '../../src/model/model.ts';
import { seededRandom } from '../../src/model/generate.ts';
import type { SampleParams } from '../../src/kernels/sample.ts';
import { locatePreset } from '../helpers/fixtures.ts';
import { withGpuErrors } from '../helpers/gpu.ts';

const preset = locatePreset('tiny');
const PROMPT = [3, 141, 59, 26, 5, 358, 97, 93, 238, 46];
const N = 12;

describe.skipIf(!preset)('pipelined decode (tiny fixture)', () => {
  for (const [what, params] of [
    ['greedy', { temperature: 0, topK: 0, topP: 1 }],
    ['sampled: temperature 1.3, top-k 50, top-p 0.9, seeded', { temperature: 1.3, topK: 50, topP: 0.9 }],
  ] as const) {
    it(`${what}: the same ids and state as the lockstep loop`, () =>
      withGpuErrors(async (device) => {
        const model = await Qwen3NextGpuModel.fromCheckpoint(new GpuContext(device), await preset!.openCheckpoint(), { maxContext: 64, maxTokensPerStep: 16 });
        const run = async (pipelined: boolean) => {
          const random = seededRandom(7);
          const sampling = (): SampleParams => ({ ...params, random: random() });
          model.reset();
          await model.forward(PROMPT.slice(0, -1));
          const ids: number[] = [];
          if (pipelined) {
            let pending = await model.submitToken(PROMPT[PROMPT.length - 1], sampling());
            while (true) {
              const ahead = await model.submitToken(undefined, sampling()); // feeds the id being read
              ids.push(await pending.read());
              if (ids.length === N) { ahead.discard(); break; } // its state stays: it fed ids[N - 1]
              pending = ahead;
            }
          } else {
            let next = await model.nextToken([PROMPT[PROMPT.length - 1]], sampling());
            for (ids.push(next); ids.length < N; ids.push(next)) next = await model.nextToken([next], sampling());
            await model.forward([next]);
          }
          return { ids, position: model.cache.position, logits: await model.forward([11]) };
        };
        const lockstep = await run(false), ahead = await run(true);
        expect(ahead.ids).toEqual(lockstep.ids);
        expect(new Set(lockstep.ids).size, 'the ids vary (not a stuck loop)').toBeGreaterThan(2);
        expect(ahead.position, "the prompt and every sampled id fed").toBe(PROMPT.length + N);
        expect(ahead.position).toBe(lockstep.position);
        expect(Array.from(ahead.logits)).toEqual(Array.from(lockstep.logits));
      }));
  }
});
