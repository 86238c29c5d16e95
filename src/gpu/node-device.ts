// WebGPU in Node through Dawn (the `webgpu` package). On a machine without a GPU it runs on SwiftShader,
// the software Vulkan driver shipped in Debian's chromium package; on a GPU machine the real driver is used.
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { WebGPUNotAvailableError } from '../errors.ts';
import { setWgslLanguageFeatures } from './context.ts';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

let gpu: GPU | undefined;

/** The process-wide `navigator.gpu` equivalent. Sets the SwiftShader ICD when no Vulkan driver is configured. */
export async function nodeGPU(): Promise<GPU> {
  if (gpu) return gpu;
  const software = !process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES && existsSync(SWIFTSHADER_ICD);
  if (software) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  // Without it the Vulkan loader prints "XDG_RUNTIME_DIR is invalid" once per device on headless machines.
  process.env.XDG_RUNTIME_DIR ??= tmpdir();
  // SwiftShader's Vulkan zero-initialisation of workgroup memory makes pipeline compiles grow with the size of
  // workgroup arrays (seconds per GEMM pipeline). Dawn then zero-initialises in the shader instead: same
  // semantics, compiles in milliseconds.
  // Timestamp queries unquantised: Dawn rounds them to ~65 us by default (a browser's guard against timing
  // attacks, which a Node process does not need), too coarse for the per-kernel profile (bench/profile.ts).
  const disabled = ['timestamp_quantization'];
  if (software || process.env.VK_ICD_FILENAMES === SWIFTSHADER_ICD) disabled.push('use_vulkan_zero_initialize_workgroup_memory_extension');
  const options = [`disable-dawn-features=${disabled.join(',')}`];
  let mod: typeof import('webgpu');
  try {
    mod = await import('webgpu');
  } catch (e) {
    throw new WebGPUNotAvailableError(`The 'webgpu' package (Dawn for Node) failed to load: ${(e as Error).message}. Run the set-up command in the README.`, { cause: e });
  }
  Object.assign(globalThis, mod.globals);
  gpu = mod.create(options);
  setWgslLanguageFeatures(gpu.wgslLanguageFeatures);
  return gpu;
}

/** A device with the adapter's maximum limits and every feature we can use. */
export async function requestNodeDevice(): Promise<GPUDevice> {
  const g = await nodeGPU();
  const adapter = await g.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    throw new WebGPUNotAvailableError(
      'No WebGPU adapter. On Linux without a GPU install the software driver (apt-get install chromium libvulkan1: the README set-up command does this); on a GPU machine check the Vulkan driver (vulkaninfo).',
    );
  }
  const requiredLimits: Record<string, number> = {};
  for (const key of [
    'maxStorageBufferBindingSize',
    'maxBufferSize',
    'maxComputeWorkgroupStorageSize',
    'maxComputeInvocationsPerWorkgroup',
    'maxComputeWorkgroupSizeX',
    'maxComputeWorkgroupSizeY',
    'maxComputeWorkgroupSizeZ',
    'maxStorageBuffersPerShaderStage',
    'maxComputeWorkgroupsPerDimension',
  ] as const) {
    requiredLimits[key] = adapter.limits[key];
  }
  const wanted: GPUFeatureName[] = ['subgroups', 'timestamp-query', 'shader-f16'];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  return adapter.requestDevice({ requiredLimits, requiredFeatures });
}
