// Entry of dist/bench/bench.mjs: prints markdown tables (paste them into BENCHMARKS.md with the card and date).
//   node dist/bench/bench.mjs [--shapes real|tiny] [--suite kernels,e2e,profile,ablate,stream] [--dir /tmp] [--upload writeBuffer] [--kv f16|f32]
//     [--contexts 1024,4096,32768,131072,262144]   decode contexts of the e2e suite (default 1K, 4K, 32K)
//     [--prefill 4096] [--reps 3]   the e2e suite's prefill length and repetitions
//     [--int8 off]   prefill GEMMs on f32 activations (default: int8 where WGSL has packed dot products)
//   suite spec: speculative decoding (bench/spec.ts) at 4K context [--spec-k 1,2,3 | none]   draft counts to run rounds of
import { tmpdir } from 'node:os';
import { GpuContext } from '../src/gpu/context.ts';
import { requestNodeDevice } from '../src/gpu/node-device.ts';
import { runBench, markdown, readCeiling, computeCeiling } from './bench.ts';
import { profileMarkdown } from './profile.ts';
import { runEndToEnd } from './e2e.ts';
import { runAblation } from './ablate.ts';
import { runStreaming, type StreamOptions } from './stream.ts';
import { runSpeculativeBench } from './spec.ts';

const arg = (name: string, fallback: string) => (process.argv.includes(`--${name}`) ? process.argv[process.argv.indexOf(`--${name}`) + 1] : fallback);
const shapes = arg('shapes', 'real');
if (shapes !== 'real' && shapes !== 'tiny') throw new Error(`--shapes real|tiny, got ${shapes}`);
const suites = new Set(arg('suite', 'kernels,e2e,stream').split(','));
const real = shapes === 'real';
console.log(`${new Date().toISOString()} shapes=${shapes} suites=${[...suites]}`);

if (suites.has('kernels')) console.log(markdown(await runBench(shapes)));

// --int8 off: prefill GEMMs on f32 activations (the path before the int8 GEMM), for before/after in one bundle
const ctx = new GpuContext(await requestNodeDevice(), { int8Matmul: arg('int8', 'on') !== 'off' });
console.log(`prefill GEMMs of q4 weights on ${ctx.int8Matmul ? 'int8' : 'f32'} activations`);
const errors: string[] = [];
ctx.device.addEventListener('uncapturederror', (e) => errors.push((e as GPUUncapturedErrorEvent).error.message));
const GiB = 2 ** 30;
const kvCache = process.argv.includes('--kv') ? (arg('kv', 'f16') as 'f16' | 'f32') : undefined;

if (suites.has('e2e') || (suites.has('profile') && !suites.has('spec'))) {
  const read = suites.has('profile') ? await readCeiling(ctx, real ? 1024 : 4) : undefined;
  if (read) console.log(`\nread ceiling (same process): ${read.GBs.toFixed(0)} GB/s`);
  const fma = read && await computeCeiling(ctx, 'fma_loop', real);
  if (fma) console.log(`f32 FMA ceiling (same process): ${fma.tops.toFixed(1)} TFLOP/s`);
  const profile = read && { readGBs: read.GBs, fmaTFs: fma!.tops, reps: real ? 9 : 2 };
  const { rows, gpuBytes, loadMs, profiles, prefillProfile } = await runEndToEnd(ctx, real
    ? { layers: 48, prefillT: Number(arg('prefill', '4096')), stepT: 2048, contexts: arg('contexts', '1024,4096,32768').split(',').map(Number), decodeTokens: 32, reps: Number(arg('reps', '3')), profile, kvCache }
    : { layers: 4, small: true, prefillT: 65, contexts: [70, 130], decodeTokens: 3, reps: 1, profile, kvCache });
  console.log(`\nend to end, resident, ${kvCache ?? 'f16'} K/V cache: model ${(gpuBytes / GiB).toFixed(2)} GiB on the GPU (weights filled in ${(loadMs / 1000).toFixed(1)} s)`);
  console.log('| what | median ms | tokens/s |\n|---|---|---|');
  for (const r of rows) console.log(`| ${r.name} (${r.detail}) | ${r.median.toFixed(2)} | ${r.perSecond.toFixed(1)} |`);
  for (const { context, profile: p } of profiles) console.log(`\ndecode token at ${context} context, per kernel (timestamp queries):\n${profileMarkdown(p)}`);
  if (prefillProfile) console.log(`\nprefill step of ${real ? 2048 : 65} tokens ending at ${real ? arg('prefill', '4096') : 65}, per kernel (timestamp queries):\n${profileMarkdown(prefillProfile)}`);
}

if (suites.has('spec')) {
  const k = arg('spec-k', '1,2,3'), specKs = k === 'none' ? [] : k.split(',').map(Number);
  const read = suites.has('profile') ? await readCeiling(ctx, real ? 1024 : 4) : undefined;
  const profile = read && { readGBs: read.GBs, reps: real ? 9 : 2 };
  console.log(`\n${await runSpeculativeBench(ctx, real ? { layers: 48, context: 4096, tokens: 48, reps: 3, profile, ks: specKs } : { layers: 2, small: true, context: 40, tokens: 4, reps: 1, profile })}`);
}

if (suites.has('ablate')) {
  const info = (ctx.device as GPUDevice & { adapterInfo?: GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number } }).adapterInfo;
  console.log(`\nadapter: ${info?.vendor} ${info?.architecture} ${info?.description}; subgroups ${info?.subgroupMinSize}..${info?.subgroupMaxSize}, used for teams up to ${ctx.subgroupMinSize}`);
  const read = await readCeiling(ctx, real ? 1024 : 4);
  console.log(`\nablation (read ceiling ${read.GBs.toFixed(0)} GB/s):\n${await runAblation(ctx, read.GBs, real ? 'real' : 'tiny')}`);
}

if (suites.has('stream')) {
  const o: StreamOptions = {
    layers: real ? 48 : 4, small: !real, dir: arg('dir', tmpdir()),
    gpuCapBytes: real ? 4 * GiB : 0, ramCacheBytes: real ? 2 * GiB : 1 << 20,
    promptTokens: real ? 8 : 5, decodeTokens: real ? 32 : 4,
    zipfS: 1.0, reuse: 0.5, prefetchAccuracy: 0.8,
    runs: [
      { trace: 'uniform', upload: 'writeBuffer', prefetch: true },
      { trace: 'zipf', upload: 'writeBuffer', prefetch: true },
      { trace: 'zipf', upload: 'writeBuffer', prefetch: false },
      { trace: 'zipf', upload: 'staging-ring', prefetch: true },
      { trace: 'calibrated', upload: 'staging-ring', prefetch: true },
      // the random weights' own routers: exact, then cache-aware (issue #16's opt-in mode)
      { trace: 'router', upload: 'staging-ring', prefetch: true },
      { trace: 'router', upload: 'staging-ring', prefetch: true, cacheAware: 5 },
    ],
  };
  const { rows, storeBytes, storeMs } = await runStreaming(ctx, o);
  console.log(`\nstreaming: cap ${(o.gpuCapBytes / GiB).toFixed(1)} GiB, RAM tier ${(o.ramCacheBytes / GiB).toFixed(2)} GiB, store ${(storeBytes / GiB).toFixed(2)} GiB written in ${(storeMs / 1000).toFixed(1)} s; zipf s=${o.zipfS}, reuse ${o.reuse}, simulated prefetch accuracy ${o.prefetchAccuracy}`);
  console.log('| run | tokens/s (median) | hit rate | prefetch acc. | stall ms/token | readback ms/token | MiB uploaded/token | slots/layer | GPU GiB |\n|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.run} | ${r.tokPerS.toFixed(2)} | ${r.hitRate.toFixed(3)} | ${r.prefetchAccuracy.toFixed(2)} | ${r.stallMsPerToken.toFixed(1)} | ${r.readbackMsPerToken.toFixed(1)} | ${r.mbUploadedPerToken.toFixed(1)} | ${r.slotsPerLayer} | ${(r.gpuBytes / GiB).toFixed(2)} |`);
  }
}

await ctx.device.queue.onSubmittedWorkDone();
if (errors.length) {
  console.error(`GPU errors:\n${errors.join('\n')}`);
  process.exit(1);
}
process.exit(0);
