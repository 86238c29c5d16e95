// The CPU side of the expert cache, free of WebGPU so it can be unit-tested: which slot holds which expert
// (per-layer LRU with the current sub-batch's experts pinned), how a step's tokens are cut into sub-batches
// whose experts fit the slots, and the RAM tier of record buffers in front of the store.

/**
 * One layer's slot assignment. Eviction is least-recently-used over slots whose expert the current
 * sub-batch does not need (pinned): an expert used by this token is never evicted to make room for another
 * expert of the same token. LRU rather than LFU: decode routing drifts with the text, and LRU adapts
 * without a decay constant to tune.
 */
export class SlotTable {
  readonly slotOf: Int32Array; // (E) expert -> slot, -1 when not resident
  readonly expertIn: Int32Array; // (slots) slot -> expert, -1 when free
  private readonly lastUse: Float64Array; // (slots) tick of the last sub-batch that used the slot
  private tick = 0;
  evictions = 0;

  constructor(readonly E: number, readonly slots: number) {
    this.slotOf = new Int32Array(E).fill(-1);
    this.expertIn = new Int32Array(slots).fill(-1);
    this.lastUse = new Float64Array(slots);
  }

  /**
   * Make room for `experts` (distinct, at most `slots`): returns the experts that must be uploaded, each with
   * the slot it goes into. Resident ones are only touched. The slot table is updated as if the uploads are done.
   */
  assign(experts: Iterable<number>): { expert: number; slot: number }[] {
    const need = [...experts];
    if (need.length > this.slots) throw new RangeError(`${need.length} experts in one sub-batch exceed the ${this.slots} slots`);
    const t = ++this.tick;
    const missing: number[] = [];
    for (const e of need) {
      const s = this.slotOf[e];
      if (s >= 0) this.lastUse[s] = t;
      else missing.push(e);
    }
    const out: { expert: number; slot: number }[] = [];
    for (const e of missing) {
      const slot = this.victim(t);
      const old = this.expertIn[slot];
      if (old >= 0) { this.slotOf[old] = -1; this.evictions++; }
      this.expertIn[slot] = e;
      this.slotOf[e] = slot;
      this.lastUse[slot] = t;
      out.push({ expert: e, slot });
    }
    return out;
  }

  /** A free slot, else the least recently used one not used at tick `t` (the pinned set). */
  private victim(t: number): number {
    let best = -1;
    for (let s = 0; s < this.slots; s++) {
      if (this.expertIn[s] < 0) return s;
      if (this.lastUse[s] === t) continue;
      if (best < 0 || this.lastUse[s] < this.lastUse[best]) best = s;
    }
    if (best < 0) throw new Error('expert cache: every slot is pinned');
    return best;
  }

  /** The table as uploaded to the GPU: non-resident experts map to slot 0 (the kernels never read them). */
  gpuTable(): Uint32Array<ArrayBuffer> {
    return Uint32Array.from(this.slotOf, (s) => Math.max(s, 0));
  }
}

/**
 * Cut a step's tokens into contiguous runs [start, end) whose union of routed experts fits `slots`:
 * greedy, a run grows until the next token would bring the union over. Contiguous runs keep the MoE a plain
 * call on a token range (rows copied in and out), and decode (one token, k <= slots experts) is one run.
 */
export function planSubBatches(idx: Uint32Array, T: number, k: number, slots: number): { start: number; end: number; experts: number[] }[] {
  const runs: { start: number; end: number; experts: number[] }[] = [];
  let start = 0, set = new Set<number>();
  for (let t = 0; t < T; t++) {
    const next = new Set(set);
    for (let j = 0; j < k; j++) next.add(idx[t * k + j]);
    if (next.size > slots && t > start) {
      runs.push({ start, end: t, experts: [...set] });
      start = t;
      set = new Set(idx.subarray(t * k, t * k + k));
    } else set = next;
  }
  runs.push({ start, end: T, experts: [...set] });
  return runs;
}

/** One streaming layer's routing as the GPU made it, read back: (T, k) ids and weights, and the (T, E+1) logits. */
export interface LayerRouting {
  idx: Uint32Array<ArrayBuffer>;
  w: Float32Array<ArrayBuffer>;
  logits: Float32Array<ArrayBuffer>; // router | shared gate, per token
}

/**
 * Cache-aware routing (opt-in, approximate; issue #16): each token keeps its router's `exact` best experts as they
 * are; each other pick whose expert is not `available` (not in a GPU slot) is replaced by the best-scoring
 * available expert the token has not chosen, so a token uploads at most `exact` experts. A replaced row's weights
 * are the router's softmax probabilities of the final choice, renormalised when the model does (norm_topk_prob);
 * rows without a replacement stay as the GPU made them, bit for bit. Where no available expert is left the pick
 * stays. Rewrites `r.idx` / `r.w` in place; returns how many picks it replaced.
 */
export function cacheAwareRoute(r: LayerRouting, T: number, E: number, k: number, normTopk: boolean, exact: number, available: (e: number) => boolean): number {
  let replaced = 0;
  for (let t = 0; t < T; t++) {
    const row = r.idx.subarray(t * k, (t + 1) * k);
    if (row.every((e, j) => j < exact || available(e))) continue;
    const logits = r.logits.subarray(t * (E + 1), t * (E + 1) + E);
    const chosen = new Set(row), candidates: number[] = [];
    for (let e = 0; e < E; e++) if (available(e) && !chosen.has(e)) candidates.push(e);
    candidates.sort((a, b) => logits[b] - logits[a] || a - b); // best first (softmax keeps the logits' order)
    let next = 0;
    for (let j = exact; j < k; j++) {
      if (available(row[j]) || next >= candidates.length) continue;
      row[j] = candidates[next++];
    }
    if (next === 0) continue;
    replaced += next;
    const { max, sum } = softmaxOf(logits);
    let picked = 0;
    for (const e of row) picked += Math.exp(logits[e] - max) / sum;
    row.forEach((e, j) => { r.w[t * k + j] = Math.exp(logits[e] - max) / sum / (normTopk ? picked : 1); });
  }
  return replaced;
}

/** Adds to `mass` (E) the router's softmax over the E experts of each (E+1)-wide row of `logits` (router | shared gate). */
export function addRouterProbabilities(mass: Float64Array, logits: Float32Array): void {
  const E = mass.length;
  for (let r = 0; r + E < logits.length; r += E + 1) {
    const row = logits.subarray(r, r + E), { max, sum } = softmaxOf(row);
    for (let e = 0; e < E; e++) mass[e] += Math.exp(row[e] - max) / sum;
  }
}

/** A row's softmax as p_i = exp(x_i - max) / sum (f32 logits, summed in f64). */
function softmaxOf(row: Float32Array): { max: number; sum: number } {
  let max = -Infinity, sum = 0;
  for (const x of row) max = Math.max(max, x);
  for (const x of row) sum += Math.exp(x - max);
  return { max, sum };
}

/** Least-recently-used record buffers up to a byte budget; remembers which came from a prefetch. */
export class RamTier {
  private readonly lru = new Map<string, Uint32Array<ArrayBuffer>>();
  private readonly prefetched = new Set<string>();
  bytes = 0;

  constructor(readonly budget: number) {}

  /** The record, moved to most recently used; `prefetched` says whether a prefetch stored it and nothing used it since. */
  take(key: string): { rec: Uint32Array<ArrayBuffer>; prefetched: boolean } | undefined {
    const rec = this.lru.get(key);
    if (!rec) return undefined;
    this.lru.delete(key);
    this.lru.set(key, rec);
    const prefetched = this.prefetched.delete(key);
    return { rec, prefetched };
  }

  has(key: string): boolean {
    return this.lru.has(key);
  }

  put(key: string, rec: Uint32Array<ArrayBuffer>, prefetched = false): void {
    if (rec.byteLength > this.budget) return;
    const old = this.lru.get(key);
    if (old) { this.bytes -= old.byteLength; this.lru.delete(key); }
    this.lru.set(key, rec);
    this.bytes += rec.byteLength;
    if (prefetched) this.prefetched.add(key);
    for (const [k, r] of this.lru) {
      if (this.bytes <= this.budget) break;
      this.lru.delete(k);
      this.prefetched.delete(k);
      this.bytes -= r.byteLength;
    }
  }
}

const MiB = 2 ** 20;

/**
 * The RAM tier's default budget: an eighth of the machine's memory, from 128 MiB to 1 GiB (so a tab never holds
 * more than a browser gives one comfortably). navigator.deviceMemory is in GiB, rounded by the browser (Chrome:
 * 0.25 to 8); where it is missing (Firefox, Safari, Node) the default is 256 MiB.
 */
export function defaultRamCacheBytes(deviceMemoryGiB = (globalThis.navigator as { deviceMemory?: number } | undefined)?.deviceMemory): number {
  if (!(typeof deviceMemoryGiB === 'number' && deviceMemoryGiB > 0)) return 256 * MiB;
  return Math.min(1024 * MiB, Math.max(128 * MiB, Math.floor((deviceMemoryGiB * 1024 * MiB) / 8)));
}
