// The next token, chosen on the GPU: the sampler kernels (src/kernels/sample.ts) run after lm_head in the decode
// step's own submit and write the id into the step input (scratch.ids), where the next step embeds it with no round
// trip, and into a 4-byte readback slot. The sampler's ops and the slots are reused from token to token; the
// repetition penalty's id list lives here too.
import { Usage, type GpuContext, type Step } from '../gpu/context.ts';
import { Sampler, type SampleParams } from '../kernels/sample.ts';

/** A decode step submitted by submitToken: read() waits for its sampled id; discard() drops it unread. */
export interface PendingToken {
  read(): Promise<number>;
  discard(): void;
}

/** One pick in flight: `after` goes into the step's submit, then submitted() maps the slot (or cancel() frees it). */
export interface Pick {
  after: Step[];
  submitted(): PendingToken;
  cancel(): void;
}

export class TokenPicker {
  private readonly idle: GPUBuffer[] = []; // (1) u32 MAP_READ slots
  private history?: GPUBuffer; // (n) u32 ids for the repetition penalty
  private readonly sampler: Sampler;

  constructor(private readonly ctx: GpuContext, logits: GPUBuffer, private readonly ids: GPUBuffer, V: number) {
    this.sampler = new Sampler(ctx, logits, { buffer: ids, offset: 0, size: 4 }, V);
  }

  /** `history` (prompt + generated ids) is given only when the repetition penalty applies. */
  prepare(sampling: SampleParams, history?: number[]): Pick {
    if (history) {
      if (!this.history || this.history.size < history.length * 4) this.history = this.ctx.buffer(Math.max(1024, history.length * 8), 'history');
      this.ctx.device.queue.writeBuffer(this.history, 0, Uint32Array.from(history));
    }
    const slot = this.idle.pop() ?? this.ctx.device.createBuffer({ size: 4, usage: Usage.MAP_READ | Usage.COPY_DST, label: 'sampled id' });
    const params = history ? { ...sampling, previous: { ids: this.history!, count: history.length } } : sampling;
    const after: Step[] = [
      ...this.sampler.ops(params),
      { label: 'read sampled id', copy: { src: this.ids, srcOffset: 0, dst: slot, dstOffset: 0, size: 4 } },
    ];
    return { after, submitted: () => this.pending(slot), cancel: () => void this.idle.push(slot) };
  }

  private pending(slot: GPUBuffer): PendingToken {
    // Map now, before any later step is submitted: a map waits for the work queued before it, so one requested
    // after step n+1's submit would also wait for step n+1 and undo the overlap.
    const mapped = slot.mapAsync(1 /* GPUMapMode.READ */);
    mapped.catch(() => {}); // a lost device: read() still rejects; an unread token must not be an unhandled rejection
    let taken = false;
    const take = () => {
      if (taken) throw new Error('submitToken: a pending token is read or discarded once');
      taken = true;
    };
    return {
      read: async () => {
        take();
        await mapped;
        const value = new Uint32Array(slot.getMappedRange())[0];
        slot.unmap();
        this.idle.push(slot);
        return value;
      },
      discard: () => {
        take();
        mapped.then(() => (slot.unmap(), this.idle.push(slot)), () => {}); // a lost device drops the slot
      },
    };
  }
}
