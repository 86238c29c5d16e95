// The small WebGPU layer everything else stands on: pipelines cached by (shader, entry, constants),
// buffer helpers, and a flat op list encoded into one compute pass per submit (web-rwkv's shape).
import { shaderSource, type ShaderVariant } from './shaders.ts';

export type Constants = Record<string, number>;

/** One compute dispatch: a cached pipeline, its bind group, and the workgroup grid. */
export interface Op {
  label: string;
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  workgroups: [number, number?, number?];
  /** The fewest bytes the dispatch must read and write (weights, state, KV), where known: the profiler's floor. */
  bytes?: number;
  /** The arithmetic the dispatch must do (2 per multiply-add), where known: the prefill profile's floor. */
  flops?: number;
}

/** A buffer-to-buffer copy between dispatches (it ends the compute pass, so keep them rare: taps, last-row picks). */
export interface Copy {
  label: string;
  copy: { src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; size: number };
}

/** An entry of an op list. */
export type Step = Op | Copy;

/** A binding: a whole buffer, or a range of one. */
export type Binding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

// GPUBufferUsage / GPUMapMode values, spelled out so this module loads before Dawn's globals exist in Node.
export const Usage = { MAP_READ: 0x1, MAP_WRITE: 0x2, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const;
const MAP_READ_MODE = 0x1;
export const STORAGE = Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST;

/** How a context compiles its shaders (tests force the portable reductions on a device that has subgroups). */
export interface GpuContextOptions {
  /** Use subgroup operations where the device has them (default true). */
  subgroups?: boolean;
  /**
   * Prefill GEMMs of q4 weights on int8 activations with dot4I8Packed, where WGSL has it (default true; false keeps
   * the f32 GEMM, the reference the int8 path is measured against).
   */
  int8Matmul?: boolean;
  /** The WGSL language features of the implementation (default navigator.gpu's, or what setWgslLanguageFeatures gave). */
  wgslFeatures?: ReadonlySet<string>;
}

let defaultWgslFeatures: ReadonlySet<string> | undefined;

/** The WGSL language features contexts assume where there is no navigator.gpu (Node: node-device.ts sets Dawn's). */
export function setWgslLanguageFeatures(features: ReadonlySet<string>): void {
  defaultWgslFeatures = features;
}

export class GpuContext {
  private readonly modules = new Map<string, GPUShaderModule>();
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  /**
   * Bytes of the storage buffers made through buffer()/upload(): weights, caches, scratch (the per-op uniforms and
   * readback staging are left out). Never decremented: the model keeps what it allocates until it is dropped.
   */
  allocatedBytes = 0;
  /**
   * The narrowest subgroup the device can run (0: no subgroups, or the context was told not to use them). A kernel
   * whose reduction teams are at most this wide compiles with reduce.subgroups.wgsl (pipeline()'s `team`).
   */
  readonly subgroupMinSize: number;
  /** Prefill GEMMs of q4 weights run on int8 activations (matmul_int8.wgsl); see GpuContextOptions.int8Matmul. */
  readonly int8Matmul: boolean;

  constructor(readonly device: GPUDevice, opts: GpuContextOptions = {}) {
    const info = (device as GPUDevice & { adapterInfo?: { subgroupMinSize?: number } }).adapterInfo;
    const usable = (opts.subgroups ?? true) && device.features.has('subgroups');
    this.subgroupMinSize = usable ? (info?.subgroupMinSize ?? 0) : 0;
    const wgsl = opts.wgslFeatures ?? (globalThis.navigator as Navigator | undefined)?.gpu?.wgslLanguageFeatures ?? defaultWgslFeatures;
    this.int8Matmul = (opts.int8Matmul ?? true) && !!wgsl?.has('packed_4x8_integer_dot_product');
  }

  /** Whether reductions over teams `team` lanes wide run on subgroups (see subgroupMinSize). */
  subgroupsFor(team: number): boolean {
    return this.subgroupMinSize >= team;
  }

  module(shader: string, variant: ShaderVariant = { subgroups: false }): GPUShaderModule {
    const key = `${shader}|${variant.subgroups}|${!!variant.halfKv}`;
    let m = this.modules.get(key);
    if (!m) {
      m = this.device.createShaderModule({ label: shader, code: shaderSource(shader, variant) });
      this.modules.set(key, m);
    }
    return m;
  }

  /**
   * The pipeline for (shader file, entry point, override constants), created once. A `TEAM` constant (the lanes
   * of a kernel's reduction teams, reduce.wgsl) picks the subgroup build when the device's subgroups are that wide;
   * `halfKv` the build whose K/V cache is f16 (kv.f16.wgsl).
   */
  pipeline(shader: string, entryPoint: string, constants: Constants = {}, halfKv = false): GPUComputePipeline {
    const subgroups = constants.TEAM !== undefined && this.subgroupsFor(constants.TEAM);
    const key = `${shader}|${entryPoint}|${subgroups}|${halfKv ? 'f16 kv|' : ''}${Object.entries(constants).sort().map(([k, v]) => `${k}=${v}`).join(',')}`;
    let p = this.pipelines.get(key);
    if (!p) {
      p = this.device.createComputePipeline({
        label: key,
        layout: 'auto',
        compute: { module: this.module(shader, { subgroups, halfKv }), entryPoint, constants },
      });
      this.pipelines.set(key, p);
    }
    return p;
  }

  /** Bind group 0 with binding i = bindings[i]; a hole (undefined) is a binding number the entry point leaves unused. */
  bind(pipeline: GPUComputePipeline, bindings: (Binding | undefined)[], label?: string): GPUBindGroup {
    return this.device.createBindGroup({
      label,
      layout: pipeline.getBindGroupLayout(0),
      entries: bindings.flatMap((b, binding) => (b === undefined ? [] : [{ binding, resource: 'usage' in b ? { buffer: b } : { buffer: b.buffer, offset: b.offset, size: b.size } }])),
    });
  }

  /** Convenience: pipeline + bind group + grid as one Op. */
  op(label: string, shader: string, entry: string, constants: Constants, bindings: (Binding | undefined)[], workgroups: [number, number?, number?], halfKv = false): Op {
    const pipeline = this.pipeline(shader, entry, constants, halfKv);
    return { label, pipeline, bindGroup: this.bind(pipeline, bindings, label), workgroups };
  }

  private readonly scratch = new Map<string, GPUBuffer>();

  /**
   * A working buffer shared by every op of this context that names it, grown (replaced) when an op needs more: ops of
   * one list run in order, so e.g. every attention layer's split partials can live in one buffer.
   */
  scratchBuffer(name: string, bytes: number): GPUBuffer {
    const have = this.scratch.get(name);
    if (have && have.size >= bytes) return have;
    const buf = this.buffer(bytes, name);
    this.scratch.set(name, buf);
    return buf;
  }

  buffer(byteLength: number, label: string, usage = STORAGE): GPUBuffer {
    const size = Math.max(16, Math.ceil(byteLength / 16) * 16);
    this.allocatedBytes += size;
    return this.device.createBuffer({ label, size, usage });
  }

  upload(data: ArrayBufferView, label: string, usage = STORAGE): GPUBuffer {
    const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
    if (!(usage & Usage.UNIFORM)) this.allocatedBytes += size;
    const buf = this.device.createBuffer({ label, size, usage, mappedAtCreation: true });
    new Uint8Array(buf.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    buf.unmap();
    return buf;
  }

  /** A uniform buffer of u32/i32/f32 words (pass a Uint32Array view of the packed struct). */
  private readonly uniforms = new Map<string, GPUBuffer>();

  /**
   * A uniform buffer holding `words`, never written again: one buffer per distinct content and label, shared by
   * every op that asks (a prefill step builds ~1,200 ops, most with the same few parameter words). An op whose
   * parameters are rewritten later (a replayed list moved to a new position) takes mutableUniform().
   */
  uniform(words: Uint32Array | Int32Array | Float32Array, label = 'params'): GPUBuffer {
    const key = `${label}|${words.constructor.name}|${words.join(',')}`;
    let buf = this.uniforms.get(key);
    if (!buf) this.uniforms.set(key, (buf = this.mutableUniform(words, label)));
    return buf;
  }

  /** A uniform buffer of its own, which its owner may rewrite (queue.writeBuffer) between submits. */
  mutableUniform(words: Uint32Array | Int32Array | Float32Array, label = 'params'): GPUBuffer {
    return this.upload(words, label, Usage.UNIFORM | Usage.COPY_DST);
  }

  /** Record an op list: consecutive dispatches share one compute pass; a copy ends the pass. */
  encode(encoder: GPUCommandEncoder, steps: Step[]): void {
    let pass: GPUComputePassEncoder | undefined;
    for (const s of steps) {
      if ('copy' in s) {
        pass?.end();
        pass = undefined;
        const c = s.copy;
        encoder.copyBufferToBuffer(c.src, c.srcOffset, c.dst, c.dstOffset, c.size);
        continue;
      }
      pass ??= encoder.beginComputePass();
      pass.setPipeline(s.pipeline);
      pass.setBindGroup(0, s.bindGroup);
      pass.dispatchWorkgroups(s.workgroups[0], s.workgroups[1] ?? 1, s.workgroups[2] ?? 1);
    }
    pass?.end();
  }

  /**
   * Encode and submit an op list: one submit, or `submits` of about equal length, each as soon as it is encoded, so
   * the GPU starts on a long list before the CPU has encoded all of it (a step the CPU then waits for).
   */
  run(ops: Step[], submits = 1): void {
    const per = Math.max(1, Math.ceil(ops.length / Math.max(1, submits)));
    for (let i = 0; i < ops.length || i === 0; i += per) {
      const enc = this.device.createCommandEncoder();
      this.encode(enc, ops.slice(i, i + per));
      this.device.queue.submit([enc.finish()]);
    }
  }

  async read(buf: GPUBuffer, byteLength = buf.size, offset = 0): Promise<ArrayBuffer> {
    const staging = this.device.createBuffer({ size: Math.ceil(byteLength / 4) * 4, usage: Usage.COPY_DST | Usage.MAP_READ });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(buf, offset, staging, 0, Math.ceil(byteLength / 4) * 4);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(MAP_READ_MODE);
    const out = staging.getMappedRange().slice(0, byteLength);
    staging.destroy();
    return out;
  }

  async readF32(buf: GPUBuffer, count?: number, offsetElems = 0): Promise<Float32Array> {
    return new Float32Array(await this.read(buf, (count ?? buf.size / 4 - offsetElems) * 4, offsetElems * 4));
  }
}

const bufferIds = new WeakMap<GPUBuffer, number>();
let lastBufferId = 0;
/** A number per buffer object: a replayed op list is keyed by the buffers it binds, not by their labels. */
export function bufferId(b: GPUBuffer): number {
  let id = bufferIds.get(b);
  if (id === undefined) bufferIds.set(b, (id = ++lastBufferId));
  return id;
}

/** Workgroups needed to cover n items with groups of size g. */
export const ceilDiv = (n: number, g: number) => Math.ceil(n / g);
