// A Hugging Face Qwen3-Next checkpoint: config.json + one `model.safetensors` or shards listed in
// `model.safetensors.index.json`. Tensors are read one at a time, by byte range.
import { parseConfig, showValue, type Qwen3NextConfig } from '../config.ts';
import { ConfigError, ModelLoadError } from '../errors.ts';
import { readSafetensorsHeader, toFloat32, FLOAT_DTYPES, type TensorInfo, type SafetensorsHeader } from './safetensors.ts';
import { readText, type ByteSource, type FileSet } from './source.ts';

/** config.json and model.safetensors.index.json are a few KB / MB; refuse anything absurdly larger. */
const MAX_CONFIG_BYTES = 16 << 20;
const MAX_INDEX_BYTES = 64 << 20;
/** A shard name is a plain file name in the checkpoint folder (HF: `model-00001-of-00041.safetensors`). */
const SHARD_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export interface CheckpointTensor extends TensorInfo {
  file: string;
}

export class Checkpoint {
  private constructor(
    readonly files: FileSet,
    readonly config: Qwen3NextConfig,
    readonly rawConfig: Record<string, unknown>,
    private readonly tensors: Map<string, CheckpointTensor>,
    private readonly sources: Map<string, ByteSource>,
  ) {}

  static async open(files: FileSet): Promise<Checkpoint> {
    if (!(await files.exists('config.json'))) {
      throw new ConfigError(`${files.root}: no config.json. Point at the folder of a Hugging Face Qwen3-Next checkpoint.`, 'config.json');
    }
    let rawConfig: Record<string, unknown>;
    const configText = await readText(files.open('config.json'), MAX_CONFIG_BYTES);
    try {
      rawConfig = JSON.parse(configText);
    } catch (e) {
      throw new ConfigError(`${files.root}/config.json is not valid JSON: ${(e as Error).message}. Re-download it from the model repository.`, 'config.json');
    }
    const config = parseConfig(rawConfig);

    let shardNames: string[];
    let weightMap: Record<string, string> | undefined;
    if (await files.exists('model.safetensors.index.json')) {
      let index: { weight_map?: Record<string, string> };
      const indexText = await readText(files.open('model.safetensors.index.json'), MAX_INDEX_BYTES);
      try {
        index = JSON.parse(indexText);
      } catch (e) {
        throw new ModelLoadError(`model.safetensors.index.json is not valid JSON: ${(e as Error).message}. Re-download it from the model repository.`, 'model.safetensors.index.json');
      }
      if (typeof index !== 'object' || index === null || typeof index.weight_map !== 'object' || index.weight_map === null || Array.isArray(index.weight_map)) {
        throw new ModelLoadError('model.safetensors.index.json has no "weight_map".', 'model.safetensors.index.json');
      }
      weightMap = index.weight_map;
      for (const s of Object.values(weightMap)) {
        if (typeof s !== 'string' || !SHARD_NAME.test(s)) {
          throw new ModelLoadError(`model.safetensors.index.json names shard ${showValue(s)}, which is not a plain file name in the checkpoint folder.`, 'model.safetensors.index.json');
        }
      }
      shardNames = [...new Set(Object.values(weightMap))].sort();
    } else if (await files.exists('model.safetensors')) {
      shardNames = ['model.safetensors'];
    } else {
      throw new ModelLoadError(`${files.root}: neither model.safetensors nor model.safetensors.index.json found.`, files.root);
    }

    const tensors = new Map<string, CheckpointTensor>();
    const sources = new Map<string, ByteSource>();
    for (const shard of shardNames) {
      if (!(await files.exists(shard))) throw new ModelLoadError(`${files.root}: shard ${shard} is missing. Download the whole checkpoint.`, shard);
      const src = files.open(shard);
      sources.set(shard, src);
      const header: SafetensorsHeader = await readSafetensorsHeader(src);
      for (const t of header.tensors.values()) {
        if (weightMap && Object.hasOwn(weightMap, t.name) && weightMap[t.name] !== shard) continue;
        tensors.set(t.name, { ...t, file: shard });
      }
    }
    if (weightMap) {
      for (const [name, shard] of Object.entries(weightMap)) {
        if (!tensors.has(name)) throw new ModelLoadError(`${shard}: tensor "${name}" is listed in the index but not in the shard.`, shard, name);
      }
    }
    return new Checkpoint(files, config, rawConfig, tensors, sources);
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): CheckpointTensor {
    const t = this.tensors.get(name);
    if (!t) throw new ModelLoadError(`${this.files.root}: tensor "${name}" is missing from the checkpoint. Is this a complete Qwen3-Next checkpoint?`, undefined, name);
    return t;
  }

  /** Raw bytes of one tensor, as stored. */
  async readRaw(name: string): Promise<{ info: CheckpointTensor; bytes: Uint8Array }> {
    const info = this.info(name);
    const bytes = await this.sources.get(info.file)!.read(info.offset, info.byteLength);
    return { info, bytes };
  }

  /** One float tensor as f32, checked against the shape the model needs. */
  async read(name: string, expectShape?: readonly number[]): Promise<Float32Array> {
    const info = this.info(name);
    if (expectShape && (info.shape.length !== expectShape.length || info.shape.some((d, i) => d !== expectShape[i]))) {
      throw new ModelLoadError(
        `${info.file}: tensor "${name}" has shape [${info.shape}], the config implies [${expectShape}]. The checkpoint and config.json do not match.`,
        info.file,
        name,
      );
    }
    if (!FLOAT_DTYPES.has(info.dtype)) {
      throw new ModelLoadError(`${info.file}: tensor "${name}" is ${info.dtype}, expected a float (F32, F16 or BF16).`, info.file, name);
    }
    const { bytes } = await this.readRaw(name);
    return toFloat32(info.dtype, bytes);
  }
}
