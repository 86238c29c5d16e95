// How a missed expert's record reaches its GPU slot. Two ways, both ordered on the queue after every earlier
// submit (so a slot may be overwritten as soon as the MoE that read it was submitted):
//  - 'writeBuffer': queue.writeBuffer straight from the record (the browser copies it into its own staging).
//  - 'staging-ring': a fixed ring of mapped MAP_WRITE buffers, one record each; a miss is copied into the next
//    free one, unmapped, and copyBufferToBuffer'd into its slot; the buffer re-maps once the GPU has read it.
//    No allocation per expert, and the copy into GPU-visible memory happens on our side of the IPC.
// bench/stream.ts measures both (BENCHMARKS.md): on the H200, streaming at the 80B shape under 4 GiB spent 98 ms a
// token stalled with the ring against 170 ms with writeBuffer (2.12 vs 1.76 tok/s), so the ring is the default,
// although GPU-FACTS measured isolated 1.7 MB writeBuffer calls slightly faster. Not yet measured in Chrome.
import { Usage, type GpuContext } from '../gpu/context.ts';

export type ExpertUpload = 'writeBuffer' | 'staging-ring';

/** One record's destination ranges: words [srcWord, srcWord + words) of the record go to dst at dstByte. */
export interface RecordCopy {
  dst: GPUBuffer;
  dstByte: number;
  srcWord: number;
  words: number;
}

export interface Uploader {
  /** Queue the uploads of `records`, each with its copies. Resolves when all are queued (not when the GPU is done). */
  upload(records: { rec: Uint32Array<ArrayBuffer>; copies: RecordCopy[] }[]): Promise<void>;
}

export function createUploader(ctx: GpuContext, kind: ExpertUpload, recordWords: number, ringSize = 16): Uploader {
  return kind === 'staging-ring' ? new StagingRing(ctx, recordWords, ringSize) : new WriteBufferUploader(ctx);
}

class WriteBufferUploader implements Uploader {
  constructor(private readonly ctx: GpuContext) {}

  async upload(records: { rec: Uint32Array<ArrayBuffer>; copies: RecordCopy[] }[]): Promise<void> {
    const q = this.ctx.device.queue;
    for (const { rec, copies } of records) for (const c of copies) q.writeBuffer(c.dst, c.dstByte, rec, c.srcWord, c.words);
  }
}

class StagingRing implements Uploader {
  private readonly ready: Promise<GPUBuffer>[]; // FIFO: each resolves once its buffer is mapped for writing

  constructor(private readonly ctx: GpuContext, recordWords: number, size: number) {
    this.ready = Array.from({ length: size }, (_, i) => Promise.resolve(ctx.device.createBuffer({
      label: `expert staging ${i}`, size: recordWords * 4, usage: Usage.MAP_WRITE | Usage.COPY_SRC, mappedAtCreation: true,
    })));
  }

  async upload(records: { rec: Uint32Array<ArrayBuffer>; copies: RecordCopy[] }[]): Promise<void> {
    // In rounds of at most the ring's size: fill, unmap, one submit of all the round's copies, re-map.
    for (let start = 0; start < records.length; start += this.ready.length) {
      const round = records.slice(start, start + this.ready.length);
      const bufs = await Promise.all(round.map(() => this.ready.shift()!));
      const enc = this.ctx.device.createCommandEncoder({ label: 'expert uploads' });
      round.forEach(({ rec, copies }, i) => {
        new Uint32Array(bufs[i].getMappedRange(0, rec.byteLength)).set(rec);
        bufs[i].unmap();
        for (const c of copies) enc.copyBufferToBuffer(bufs[i], c.srcWord * 4, c.dst, c.dstByte, c.words * 4);
      });
      this.ctx.device.queue.submit([enc.finish()]);
      for (const b of bufs) this.ready.push(b.mapAsync(2 /* GPUMapMode.WRITE */).then(() => b));
    }
  }
}
