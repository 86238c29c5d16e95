// Perplexity over non-overlapping windows (each from a fresh state), as brown-tiny's train.py measures it:
// window w feeds ids[w·W .. w·W+W) and scores the next token at every position.
/** What meanNll needs of a model: the GPU one (Qwen3NextGpuModel), or the CPU reference behind an adapter. */
export interface LogitsModel {
  readonly config: { vocabSize: number };
  reset(): void;
  forward(ids: number[], opts: { logits: 'all' }): Promise<Float32Array>;
}

export async function meanNll(model: LogitsModel, ids: ArrayLike<number>, window: number, windows: number): Promise<number> {
  if (ids.length < windows * window + 1) throw new RangeError(`${windows} windows of ${window} need ${windows * window + 1} ids, got ${ids.length}`);
  const V = model.config.vocabSize;
  let nll = 0;
  for (let w = 0; w < windows; w++) {
    const seg = Array.prototype.slice.call(ids, w * window, (w + 1) * window + 1) as number[];
    model.reset();
    const logits = await model.forward(seg.slice(0, window), { logits: 'all' });
    for (let t = 0; t < window; t++) {
      const row = logits.subarray(t * V, (t + 1) * V);
      let max = -Infinity;
      for (const v of row) max = Math.max(max, v);
      let sum = 0;
      for (const v of row) sum += Math.exp(v - max);
      nll += Math.log(sum) + max - row[seg[t + 1]];
    }
  }
  return nll / (window * windows);
}
