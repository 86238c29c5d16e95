// Deterministic test data: a seeded generator so a failing shape reproduces.
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
}

/** n standard-normal samples times `scale`. */
export function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed), out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r()) * scale;
  return out;
}

/** n uniform samples in [lo, hi). */
export function randu(n: number, seed: number, lo = 0, hi = 1): Float32Array {
  const r = rng(seed), out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * r();
  return out;
}
