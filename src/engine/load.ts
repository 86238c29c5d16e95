// Everything createEngine needs before the first request: a WebGPU device, the store (HTTP or given), the
// tokenizer from the store's own files, and the weights on the GPU with byte-level progress.
import { ConfigError, ModelLoadError, WebGPUNotAvailableError } from '../errors.ts';
import { GpuContext } from '../gpu/context.ts';
import { checkKernelShapes, type Qwen3NextGpuModel } from '../model/model.ts';
import { Qwen3NextSpeculativeDecoder } from '../model/speculative.ts';
import { expertStats, loadModel, routerMass } from '../cache/load.ts';
import { parseConfig } from '../config.ts';
import { densePlan, type WeightSource } from '../format/pack.ts';
import { storeSource, type ModelStore } from '../store/store.ts';
import { Qwen3Tokenizer } from '../tokenizer/tokenizer.ts';
import { downloadModel, IdbModelStore } from '../store/browser.ts';
import { HttpStore } from './http-store.ts';
import { modelIdentity } from './session.ts';
import type { EngineOptions } from './types.ts';

const mib = (n: number) => (n / 2 ** 20).toFixed(1);

const absolute = (url: string) => new URL(url, globalThis.location?.href).href; // one database per absolute URL

/** The store for a model URL: over HTTP, or (with `cache`) the IndexedDB copy, downloading what it lacks. */
async function openUrl(url: string, opts: EngineOptions): Promise<ModelStore> {
  if (!opts.cache) return HttpStore.open(url);
  const abs = absolute(url);
  try {
    return await downloadModel(abs, {
      onWarning: opts.onWarning,
      experts: opts.backgroundExperts ? 'background' : 'first',
      accept: (m) => checkKernelShapes(parseConfig(m.config)), // a shape the GPU cannot run is refused before the download
      onProgress: (p) => opts.onProgress?.({
        phase: 'download', loaded: p.bytesDone, total: p.bytesTotal,
        text: `Downloading: ${mib(p.bytesDone)} of ${mib(p.bytesTotal)} MiB (${p.recordsDone}/${p.recordsTotal} records)` +
          (Number.isFinite(p.etaSeconds) && p.bytesDone < p.bytesTotal ? `, ${mib(p.bytesPerSecond)} MiB/s, ${Math.ceil(p.etaSeconds)} s left` : ''),
      }),
    });
  } catch (e) {
    if (!(e instanceof TypeError)) throw e; // a network failure (offline): a complete stored copy still serves
    try {
      return await openStored(abs, opts);
    } catch (stored) {
      throw new ModelLoadError(`${abs}: the network is unreachable (${e.message}) and ${(stored as Error).message}`, undefined, undefined, { cause: e });
    }
  }
}

/**
 * The IndexedDB copy of a `cache: true` model, without touching the network unless a record is damaged (or, with
 * backgroundExperts, an expert not stored yet is needed).
 */
function openStored(abs: string, opts: EngineOptions): Promise<IdbModelStore> {
  return IdbModelStore.open(abs, { source: abs.endsWith('/') ? abs : `${abs}/`, onWarning: opts.onWarning, partial: opts.backgroundExperts });
}

/** A device from navigator.gpu (page or worker), with the adapter's buffer-size limits (a real model's lm_head is > 256 MB) and subgroups. */
export async function requestBrowserDevice(): Promise<GPUDevice> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) {
    throw new WebGPUNotAvailableError(
      'This browser has no WebGPU (navigator.gpu is missing). Use a current Chrome or Edge (Linux: start it with --enable-unsafe-webgpu), ' +
        'serve the page over https or from localhost (WebGPU needs a secure context), or in Node pass `device` from requestNodeDevice().',
    );
  }
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new WebGPUNotAvailableError('navigator.gpu.requestAdapter() found no adapter: WebGPU is disabled or the GPU is blocklisted. Enable hardware acceleration in the browser settings (chrome://gpu shows why).');
  // The decode kernels stage rows in workgroup memory: at the 80B shape up to ~26 KB (the MoE GEMVs' h rows, attention's
  // queries and K/V tiles), past WebGPU's default of 16 KB, so take what the adapter has (32 KB on current GPUs).
  // The MoE gate/up takes 512 threads a workgroup where the adapter allows (moe.ts gateUpTuning; WebGPU's default is 256).
  const { maxBufferSize, maxStorageBufferBindingSize, maxComputeWorkgroupStorageSize, maxComputeInvocationsPerWorkgroup, maxComputeWorkgroupSizeX } = adapter.limits;
  // Subgroups make the reductions of the decode kernels barrier-free (reduce.subgroups.wgsl); optional.
  const requiredFeatures = (['subgroups'] as GPUFeatureName[]).filter((f) => adapter.features.has(f));
  return adapter.requestDevice({ requiredLimits: { maxBufferSize, maxStorageBufferBindingSize, maxComputeWorkgroupStorageSize, maxComputeInvocationsPerWorkgroup, maxComputeWorkgroupSizeX }, requiredFeatures });
}

export async function readTokenizer(store: ModelStore): Promise<Qwen3Tokenizer> {
  const names = new Set((await store.manifest()).files.map((f) => f.name));
  const text = async (name: string) => (names.has(name) ? new TextDecoder().decode(await store.readFile(name)) : undefined);
  return new Qwen3Tokenizer({
    tokenizerJson: new TextDecoder().decode(await store.readFile('tokenizer.json')), // required: readFile throws ModelLoadError
    tokenizerConfig: await text('tokenizer_config.json'),
    generationConfig: await text('generation_config.json'),
    chatTemplate: await text('chat_template.jinja'),
  });
}

/**
 * The background fill of a partially stored model, reported as phase 'fill' (after 'ready'), the experts `priority`
 * (the routers' summed probabilities) rates highest first; a failure (the network gone) is a warning: what arrived stays stored, experts still missing are fetched when needed, the next load resumes.
 * Returns what stops it.
 */
function startFill(store: IdbModelStore, opts: EngineOptions, priority?: (layer: number, expert: number) => number): () => void {
  const stop = new AbortController(), warn = opts.onWarning ?? console.warn;
  store.fill({
    signal: stop.signal,
    priority, // the experts the routers have wanted most first
    onProgress: (p) => opts.onProgress?.({
      phase: 'fill', loaded: p.bytesDone, total: p.bytesTotal,
      text: `Storing experts in the background: ${p.expertsDone} of ${p.expertsTotal} (${mib(p.bytesDone)} of ${mib(p.bytesTotal)} MiB)` +
        (Number.isFinite(p.etaSeconds) && p.expertsDone < p.expertsTotal ? `, ${mib(p.bytesPerSecond)} MiB/s, ${Math.ceil(p.etaSeconds)} s left` : ''),
    }),
  }).catch((e: unknown) => {
    if (!stop.signal.aborted) warn(`The background download of the model's experts stopped (${(e as Error).message}); experts still missing are fetched when a reply needs them, and the next load resumes it.`);
  });
  return () => stop.abort();
}

/** storeSource with a progress report after every record read, until `done` (experts streamed later are not loading). */
function withProgress(src: WeightSource, total: number, onProgress: EngineOptions['onProgress']): WeightSource & { done(): void } {
  let loaded = 0, active = true;
  const report = <T extends Uint32Array>(words: T): T => {
    loaded += words.byteLength;
    if (active) onProgress?.({ phase: 'fetch', loaded, total, text: `Loading weights: ${(loaded / 2 ** 20).toFixed(1)} of ${(total / 2 ** 20).toFixed(1)} MiB` });
    return words;
  };
  return { ...src, dense: async (t) => report(await src.dense(t)), expert: async (l, e) => report(await src.expert(l, e)), done: () => (active = false) };
}

export interface Loaded {
  ctx: GpuContext;
  model: Qwen3NextGpuModel;
  /** With EngineOptions.speculative: the model's MTP layer drafting. */
  speculative?: Qwen3NextSpeculativeDecoder;
  tokenizer: Qwen3Tokenizer;
  name: string;
  /** session.ts modelIdentity: what a saved session must match to be restored here. */
  modelId: string;
  ownsDevice: boolean;
  /** The store, while experts stream from it (closed by unload); undefined once every weight is on the GPU. */
  store?: ModelStore;
  /** Stops the background fill of a partially stored model (backgroundExperts), before the store closes. */
  stopFill?: () => void;
}

export async function loadEngineParts(opts: EngineOptions): Promise<Loaded> {
  const device = opts.device ?? (await requestBrowserDevice());
  const opened = typeof opts.model === 'string';
  const store = opened ? await openUrl(opts.model as string, opts) : (opts.model as ModelStore);
  return loadOnto(device, store, opened, opts);
}

/**
 * The same model again on a new device from navigator.gpu (the old one was lost): from the store still open for
 * streaming experts, the IndexedDB copy (`cache`), or the given store; only an uncached URL is fetched again.
 */
export async function reloadEngineParts(opts: EngineOptions, lost: Loaded): Promise<Loaded> {
  const device = await requestBrowserDevice();
  const url = typeof opts.model === 'string' ? opts.model : undefined;
  const store = lost.store ?? (url === undefined ? (opts.model as ModelStore) : opts.cache ? await openStored(absolute(url), opts) : await HttpStore.open(url));
  return loadOnto(device, store, url !== undefined, opts);
}

/** Tokenizer and weights from `store` onto `device`; an `opened` store is closed here unless experts stream from it. */
async function loadOnto(device: GPUDevice, store: ModelStore, opened: boolean, opts: EngineOptions): Promise<Loaded> {
  let streaming = false;
  try {
    const m = await store.manifest();
    const config = parseConfig(m.config);
    checkKernelShapes(config); // before the tokenizer and any weight is read
    const tokenizer = await readTokenizer(store);
    // what loading reads: the model's tensors and experts (the MTP layer's, when packed, are not loaded yet)
    const mtp = opts.speculative !== undefined;
    if (mtp && !m.mtp) throw new ConfigError('speculative decoding needs the model\'s multi-token-prediction layer, and this packed model has none (no mtp.* tensors): convert it from a checkpoint that has them, or leave `speculative` off.', 'manifest.json');
    const mainDense = new Set(densePlan(config, m.quant, mtp).map((t) => t.name));
    const total = [...m.dense.filter((d) => mainDense.has(d.name)), ...m.experts.slice(0, config.numLayers + (mtp ? 1 : 0)).flat()].reduce((s, r) => s + r.bytes, 0);
    const ctx = new GpuContext(device, { int8Matmul: (opts.prefillActivations ?? 'int8') === 'int8' });
    const src = withProgress(await storeSource(store, { verify: opts.verify }), total, opts.onProgress);
    const partial = store instanceof IdbModelStore && !store.complete; // experts still being stored: stream them
    const model = await loadModel(ctx, src, { maxContext: opts.maxContext, yarn: opts.yarn, kvCache: opts.kvCache, expertCacheBytes: opts.expertCacheBytes, ramCacheBytes: opts.ramCacheBytes, cacheAwareRouting: opts.cacheAwareRouting, unavailableExperts: opts.unavailableExperts, routerMass: partial, mtp, streamExperts: partial });
    src.done();
    const speculative = opts.speculative && new Qwen3NextSpeculativeDecoder(model, opts.speculative);
    streaming = expertStats(model) !== undefined;
    opts.onProgress?.({ phase: 'ready', loaded: total, total, text: 'Ready' });
    const name = typeof opts.model === 'string' ? opts.model : 'qwen3-next';
    // the cached keys carry the rope: a session saved with YaRN switched by `yarn` is another model's
    const rope = JSON.stringify(model.config.ropeScaling), modelId = await modelIdentity(m);
    return {
      ctx, model, speculative, tokenizer, name, modelId: rope === JSON.stringify(config.ropeScaling) ? modelId : `${modelId} rope ${rope}`,
      ownsDevice: !opts.device, store: opened && streaming ? store : undefined, stopFill: partial ? startFill(store as IdbModelStore, opts, routerMass(model)) : undefined,
    };
  } finally {
    if (opened && !streaming) await store.close(); // every weight is on the GPU now
  }
}
