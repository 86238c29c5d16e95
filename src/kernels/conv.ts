// Causal depthwise conv1d + SiLU of the Gated DeltaNet (shaders/conv.wgsl).
import { type GpuContext, type Op, type Binding, ceilDiv } from '../gpu/context.ts';
import { grid } from './grid.ts';

const WG = 256; // channels per workgroup
const TB = 16; // tokens per thread

/** conv.wgsl keeps K taps in registers (KMAX 8). */
export function checkConvWidth(K: number) {
  if (K < 2 || K > 8) throw new Error(`causalConv1d: kernel width ${K} outside 2..8`);
}

/**
 * y (T, convDim) = silu(causal depthwise conv of proj[:, 0:convDim]) continuing from `state`, then `state`
 * updated to the last K-1 inputs (it still holds old columns when T < K-1). Works for T = 1 (decode).
 *   proj:  (T, P) f32, the fused GDN projection; only its first convDim columns are read
 *   w:     (convDim, K) f32, HF conv1d.weight (tap K-1 multiplies the current token)
 *   state: (convDim, K-1) f32, previous inputs, oldest first (zeros for a fresh sequence); read and written
 *   y:     (T, convDim) f32
 *   snapshots: (T-1, convDim, K-1) f32, optional: the state after each token but the last (a speculative verify, T <= 16)
 */
export function causalConv1d(ctx: GpuContext, proj: Binding, P: number, w: Binding, state: Binding, y: Binding, T: number, convDim: number, K: number, snapshots?: Binding): Op {
  checkConvWidth(K);
  if (P < convDim) throw new Error(`causalConv1d: row stride ${P} < convDim ${convDim}`);
  if (snapshots && T > TB) throw new Error(`causalConv1d: state snapshots need T <= ${TB} (one thread runs every token of its channel)`);
  const params = ctx.uniform(new Uint32Array([T, P, 0, 0]));
  const groups = ceilDiv(convDim, WG) * ceilDiv(T, TB);
  const snaps = snapshots ?? ctx.scratchBuffer('no snapshots', 16);
  return ctx.op(`causal_conv1d_silu(T=${T},C=${convDim})`, 'conv.wgsl', 'causal_conv1d_silu', { CONV: convDim, K, TB, WG, SNAP: snapshots ? 1 : 0 }, [params, proj, w, state, y, snaps], grid(groups));
}
