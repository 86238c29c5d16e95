// Load-time re-layout of the Gated DeltaNet input projections (REFERENCE.md §1.2), shared by the CPU
// reference and the GPU loader.
//
// On disk `in_proj_qkvz.weight` [2·Hk·dk + 2·Hv·dv, H] is grouped by key head g: each group of
// G = 2·dk + 2·r·dv rows holds [q_g | k_g | v_{g·r..g·r+r-1} | z_{g·r..g·r+r-1}], and `in_proj_ba.weight`
// [2·Hv, H] is grouped the same way: [b_{g·r..} | a_{g·r..}] (2r rows per group). We permute rows once so
// the projection output is already contiguous: [q_all | k_all | v_all | z] and [b | a]. The conv weights,
// A_log, dt_bias, norm and out_proj are already in that order and need nothing.
import type { Qwen3NextConfig } from '../config.ts';

type GdnShape = Pick<Qwen3NextConfig, 'hiddenSize' | 'linearNumKeyHeads' | 'linearNumValueHeads' | 'linearKeyHeadDim' | 'linearValueHeadDim'>;

/** Row offsets inside the fused projection [q_all | k_all | v_all | z | b | a] (rows = 2·keyDim + 2·valueDim + 2·Hv). */
export function gdnInProjOffsets(cfg: GdnShape) {
  const keyDim = cfg.linearNumKeyHeads * cfg.linearKeyHeadDim;
  const valueDim = cfg.linearNumValueHeads * cfg.linearValueHeadDim;
  const Hv = cfg.linearNumValueHeads;
  const z = 2 * keyDim + valueDim; // = conv_dim: rows before z are exactly the conv channels
  return { q: 0, k: keyDim, v: 2 * keyDim, z, b: z + valueDim, a: z + valueDim + Hv, rows: z + valueDim + 2 * Hv };
}

/** order[newRow] = oldRow for in_proj_qkvz: new rows are [q_all | k_all | v_all | z]. */
export function qkvzRowOrder(cfg: GdnShape): Int32Array {
  const Hk = cfg.linearNumKeyHeads, dk = cfg.linearKeyHeadDim, dv = cfg.linearValueHeadDim;
  const r = cfg.linearNumValueHeads / Hk;
  const G = 2 * dk + 2 * r * dv; // rows per key-head group on disk
  const keyDim = Hk * dk, valueDim = Hk * r * dv;
  const order = new Int32Array(2 * keyDim + 2 * valueDim);
  for (let g = 0; g < Hk; g++) {
    for (let d = 0; d < dk; d++) {
      order[g * dk + d] = g * G + d; // q
      order[keyDim + g * dk + d] = g * G + dk + d; // k
    }
    for (let j = 0; j < r; j++) {
      const h = g * r + j; // value head
      for (let d = 0; d < dv; d++) {
        order[2 * keyDim + h * dv + d] = g * G + 2 * dk + j * dv + d; // v
        order[2 * keyDim + valueDim + h * dv + d] = g * G + 2 * dk + r * dv + j * dv + d; // z
      }
    }
  }
  return order;
}

/** order[newRow] = oldRow for in_proj_ba: new rows are [b | a], one per value head. */
export function baRowOrder(cfg: GdnShape): Int32Array {
  const Hk = cfg.linearNumKeyHeads, Hv = cfg.linearNumValueHeads, r = Hv / Hk;
  const order = new Int32Array(2 * Hv);
  for (let g = 0; g < Hk; g++) {
    for (let j = 0; j < r; j++) {
      order[g * r + j] = g * 2 * r + j; // b
      order[Hv + g * r + j] = g * 2 * r + r + j; // a
    }
  }
  return order;
}

/** out[i, :] = w[order[i], :] for a row-major [rows, cols] matrix. */
export function permuteRows(w: Float32Array, order: Int32Array, cols: number): Float32Array {
  if (w.length !== order.length * cols) throw new Error(`permuteRows: ${w.length} elements is not ${order.length} rows x ${cols}`);
  const out = new Float32Array(w.length);
  for (let i = 0; i < order.length; i++) out.set(w.subarray(order[i] * cols, (order[i] + 1) * cols), i * cols);
  return out;
}

/** in_proj_qkvz.weight [qkvz_dim, H] (on-disk, grouped by key head) -> rows [q_all | k_all | v_all | z]. */
export function uninterleaveQkvz(cfg: GdnShape, w: Float32Array): Float32Array {
  return permuteRows(w, qkvzRowOrder(cfg), cfg.hiddenSize);
}

/** in_proj_ba.weight [2·Hv, H] (on-disk, grouped by key head) -> rows [b | a]. */
export function uninterleaveBa(cfg: GdnShape, w: Float32Array): Float32Array {
  return permuteRows(w, baRowOrder(cfg), cfg.hiddenSize);
}

/**
 * Both on-disk projections -> one (2·keyDim + 2·valueDim + 2·Hv, H) weight with rows [q_all|k_all|v_all|z|b|a],
 * so one matmul produces every GDN input; offsets from gdnInProjOffsets().
 */
export function fusedGdnInProj(cfg: GdnShape, qkvz: Float32Array, ba: Float32Array): Float32Array {
  const a = uninterleaveQkvz(cfg, qkvz), b = uninterleaveBa(cfg, ba);
  const out = new Float32Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
