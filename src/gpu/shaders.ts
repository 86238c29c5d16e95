// WGSL sources, one file per op family in shaders/. A line `#include "name.wgsl"` is replaced by that
// file (once per shader), so helpers such as silu or int4 unpacking live in one place.
const files = import.meta.glob('../../shaders/*.wgsl', { query: '?raw', import: 'default', eager: true }) as Record<string, string>;

const sources = new Map<string, string>();
for (const [path, text] of Object.entries(files)) sources.set(path.slice(path.lastIndexOf('/') + 1), text);

const resolved = new Map<string, string>();

/** Adds a shader that is not part of the library (the benchmarks' probes), under `name`. */
export function registerShader(name: string, text: string): void {
  sources.set(name, text);
  resolved.delete(name);
}

/** The full text of shaders/<name>, includes resolved. */
export function shaderSource(name: string): string {
  const hit = resolved.get(name);
  if (hit) return hit;
  const seen = new Set<string>();
  const expand = (file: string): string => {
    const text = sources.get(file);
    if (text === undefined) throw new Error(`shader ${file} not found in shaders/`);
    seen.add(file);
    return text.replace(/^#include "([^"]+)"\s*$/gm, (_, inc: string) => (seen.has(inc) ? '' : expand(inc)));
  };
  const out = expand(name);
  resolved.set(name, out);
  return out;
}
