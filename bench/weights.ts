// Weights for the end-to-end benchmarks at the Qwen3-Next-80B-A3B shape, without a checkpoint: pseudo-random
// words filled on the GPU (resident runs) or written once to a packed store on disk (streaming runs). The masks
// keep every value finite and small (f16 scales <= 2^-7, f32 vectors |x| < 2^-6), so 48 layers neither overflow
// nor NaN: kernel costs do not depend on the values, but top-k and softmax should see ordinary numbers.
import { createHash } from 'node:crypto';
import { link, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { LayerType, Qwen3NextConfig } from '../src/config.ts';
import { type GpuContext } from '../src/gpu/context.ts';
import { grid } from '../src/kernels/grid.ts';
import './probe.ts';
import type { GpuWeight } from '../src/gpu/packed-weight.ts';
import { densePlan, expertLayout, type QuantConfig } from '../src/format/pack.ts';
import { emptyExperts, sharedExpertFits, sharedExpertViews, type GpuLayer, type GpuWeights } from '../src/model/gpu-weights.ts';
import { packedWords, type WeightFormat } from '../src/quant/formats.ts';
import { ropeInvFreq } from '../src/model/rope.ts';
import { FORMAT, VERSION, denseShardName, expertFileName, type Manifest, type RecordEntry } from '../src/store/manifest.ts';
import { NodeStoreWriter } from '../src/store/node.ts';

const F32_MASK = 0xbc7fffff; // sign kept, exponent <= 120: |x| < 2^-6
const PACKED_MASK = 0x9fff9fff; // every f16 half: sign kept, exponent <= 7: |x| < 2^-7 (q4/q8 nibbles: don't care)
export const maskFor = (f: WeightFormat) => (f === 'f32' ? F32_MASK : PACKED_MASK);

let seed = 1;
/** Fill `buf` (words) on the GPU: words[i] = hash(i ^ seed) & mask. */
export function fillWords(ctx: GpuContext, buf: GPUBuffer, words: number, mask: number): void {
  const params = ctx.uniform(new Uint32Array([words, mask, seed++ * 0x9e3779b9, 0]));
  ctx.run([ctx.op('fill', 'probe.wgsl', 'fill', {}, [params, buf], grid(Math.ceil(words / 256)))]);
}

/**
 * GpuWeights of `c` filled on the GPU; `slots` < E leaves the routed slots' contents to a streaming cache; `mtp` adds
 * an MTP layer (experts resident). Laid out as loadGpuWeights lays them out: the shared expert in one more expert
 * slot where it fits (sharedExpertFits).
 */
export function randomGpuWeights(ctx: GpuContext, c: Qwen3NextConfig, quant: QuantConfig, slots = c.numExperts, mtp = false): GpuWeights {
  const shared = sharedExpertFits(c, quant);
  const byName = new Map<string, GpuWeight>();
  for (const t of densePlan(c, quant, mtp)) {
    if (shared && /^L\d+\.shared_(gate_up|down)$/.test(t.name)) continue;
    const words = packedWords(t.format, t.N, t.K), buffer = ctx.buffer(words * 4, t.name);
    fillWords(ctx, buffer, words, maskFor(t.format));
    byName.set(t.name, { buffer, offset: 0, format: t.format, N: t.N, K: t.K });
  }
  const { gateUpWords, downWords } = expertLayout(c, quant.experts);
  const layer = (i: number, type: LayerType, slots: number): GpuLayer => {
    const weights = new Map<string, GpuWeight>();
    for (const [name, w] of byName) if (name.startsWith(`L${i}.`)) weights.set(name.slice(`L${i}.`.length), w);
    const experts = emptyExperts(ctx, c, quant.experts, i, slots, shared), n = slots + (shared ? 1 : 0);
    fillWords(ctx, experts.gateUp, n * gateUpWords, PACKED_MASK); // routed slots of a streaming model are refilled on demand
    fillWords(ctx, experts.down, n * downWords, PACKED_MASK);
    if (slots === c.numExperts) ctx.device.queue.writeBuffer(experts.slotOf, 0, Uint32Array.from({ length: c.numExperts }, (_, e) => e));
    if (shared) for (const [name, view] of sharedExpertViews(c, experts)) weights.set(name, view);
    return { type, weights, experts };
  };
  const layers = c.layerTypes.map((type, i) => layer(i, type, slots));
  const vector = (name: string) => byName.get(name)!.buffer;
  return {
    config: c, quant, layers,
    mtp: mtp ? { preFcNormEmbedding: vector('mtp.pre_fc_norm_embedding'), preFcNormHidden: vector('mtp.pre_fc_norm_hidden'), fc: byName.get('mtp.fc')!, layer: layer(c.numLayers, 'full_attention', c.numExperts), norm: vector('mtp.norm') } : undefined,
    embed: byName.get('embed')!, norm: byName.get('norm')!, lmHead: byName.get('lm_head')!,
    invFreq: ctx.upload(ropeInvFreq(c.ropeTheta, c.rotaryDim), 'rope.inv_freq'), ropeAttentionFactor: 1,
  };
}

/** `words` pseudo-random masked words from the CPU (xorshift). */
function randomWords(words: number, mask: number, s: number): Uint32Array<ArrayBuffer> {
  const out = new Uint32Array(words);
  let x = s | 1;
  for (let i = 0; i < words; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    out[i] = (x >>> 0) & mask;
  }
  return out;
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/**
 * A packed store of `c` on disk (the format src/store/ reads): one data file per dense tensor and one expert file
 * per layer, where layers 1.. are hard links to layer 0's file. The records hold the same random bytes: what a
 * streaming run measures (store reads, RAM tier, uploads) does not depend on them. 48 distinct layer files would
 * be 43 GB that the GPU machine's page cache holds anyway (128 GB RAM), so the read path is the same either way.
 */
export async function writeSyntheticStore(dir: string, raw: Record<string, unknown>, c: Qwen3NextConfig, quant: QuantConfig): Promise<{ bytes: number; ms: number }> {
  const t0 = performance.now();
  const w = await NodeStoreWriter.create(dir);
  const data: { name: string; bytes: number }[] = [];
  const dense = [];
  for (const [i, t] of densePlan(c, quant).entries()) {
    const bytes = new Uint8Array(randomWords(packedWords(t.format, t.N, t.K), maskFor(t.format), i + 7).buffer);
    const file = denseShardName(i);
    await w.write(file, 0, bytes);
    data.push({ name: file, bytes: bytes.length });
    dense.push({ ...t, file, offset: 0, bytes: bytes.length, sha256: sha(bytes) });
  }
  const { words } = expertLayout(c, quant.experts);
  const rec = new Uint8Array(randomWords(words, PACKED_MASK, 99).buffer), recSha = sha(rec);
  for (let e = 0; e < c.numExperts; e++) await w.write(expertFileName(0), e * rec.length, rec);
  const experts: RecordEntry[][] = c.layerTypes.map((_, l) => {
    data.push({ name: expertFileName(l), bytes: c.numExperts * rec.length });
    return Array.from({ length: c.numExperts }, (_, e) => ({ file: expertFileName(l), offset: e * rec.length, bytes: rec.length, sha256: recSha }));
  });
  const m: Manifest = { format: FORMAT, version: VERSION, config: raw, quant, files: [], data, dense, experts };
  await w.commit(m); // closes the files
  for (let l = 1; l < c.numLayers; l++) {
    await rm(join(dir, expertFileName(l)), { force: true });
    await link(join(dir, expertFileName(0)), join(dir, expertFileName(l)));
  }
  return { bytes: data.reduce((n, d) => n + d.bytes, 0), ms: performance.now() - t0 };
}

export const storeDir = (base: string, layers: number) => join(base, `q3n-synthetic-${layers}L`);
