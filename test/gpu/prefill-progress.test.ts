// A long prompt's prefill reports its progress (model.forward's `progress` hook, the engine's onPrefillProgress):
// once per step, as the GPU finishes it, in order, ending at the prompt's length; the speculative prefill (the MTP
// layer following) reports the same steps.
import { describe, expect, it } from 'vitest';
import { GpuContext } from '../../src/gpu/context.ts';
import { Qwen3NextGpuModel } from '../../src/model/model.ts';
import { Qwen3NextSpeculativeDecoder } from '../../src/model/speculative.ts';
import { locatePreset } from '../helpers/fixtures.ts';
import { withGpuErrors } from '../helpers/gpu.ts';

describe('prefill progress', () => {
  it('steps of 8 over 21 tokens: (8, 21), (16, 21), (21, 21), plain and speculative', () =>
    withGpuErrors(async (device) => {
      const model = await Qwen3NextGpuModel.fromCheckpoint(new GpuContext(device), await locatePreset('tiny')!.openCheckpoint(), { maxContext: 64, maxTokensPerStep: 8, mtp: true });
      const ids = Array.from({ length: 21 }, (_, i) => (i * 37 + 5) % model.config.vocabSize);
      for (const run of [(p: (d: number, t: number) => void) => model.forward(ids, {}, { progress: p }), (p: (d: number, t: number) => void) => new Qwen3NextSpeculativeDecoder(model, { draftTokens: 1 }).prefill(ids, p)]) {
        model.reset();
        const calls: [number, number][] = [];
        await run((done, total) => calls.push([done, total]));
        await device.queue.onSubmittedWorkDone();
        await new Promise((r) => setTimeout(r, 0));
        expect(calls).toEqual([[8, 21], [16, 21], [21, 21]]);
      }
    }));
});
