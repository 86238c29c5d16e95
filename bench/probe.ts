// The benchmarks' probe shader (fill, read ceiling, FMA ceiling, dependent-dispatch tick): registered with the
// shader loader here, so the library's own shaders/ holds only what the runtime runs.
import { registerShader } from '../src/gpu/shaders.ts';
import probe from './probe.wgsl?raw';

registerShader('probe.wgsl', probe);
