// WGSL sources, one file per op family in shaders/. A line `#include "name.wgsl"` is replaced by that file (once
// per shader), so helpers such as silu, packed-weight addressing or reductions live in one place. A shader built
// for subgroups (ShaderVariant) takes `name.subgroups.wgsl` for an include where that file exists (the same
// functions on subgroup operations) and starts with `enable subgroups;`; one built for a half-precision K/V cache
// takes `name.f16.wgsl` where that file exists (kv.wgsl: the cache's storage type and its load / store).
const files = import.meta.glob('../../shaders/*.wgsl', { query: '?raw', import: 'default', eager: true }) as Record<string, string>;

const sources = new Map<string, string>();
for (const [path, text] of Object.entries(files)) sources.set(path.slice(path.lastIndexOf('/') + 1), text);

const resolved = new Map<string, string>();

export interface ShaderVariant {
  /** Use the subgroup versions of the includes that have one (the device has subgroups wide enough for them). */
  subgroups: boolean;
  /** Use the f16 versions of the includes that have one: K/V caches of f16 pairs packed in u32 (no shader-f16 needed). */
  halfKv?: boolean;
}

/** Adds a shader that is not part of the library (the benchmarks' probes), under `name`. */
export function registerShader(name: string, text: string): void {
  sources.set(name, text);
  for (const key of [...resolved.keys()]) if (key.startsWith(`${name}|`)) resolved.delete(key);
}

/** The full text of shaders/<name>, includes resolved, for a variant. */
export function shaderSource(name: string, variant: ShaderVariant = { subgroups: false }): string {
  const key = `${name}|${variant.subgroups ? 'subgroups' : 'portable'}|${variant.halfKv ? 'f16 kv' : 'f32 kv'}`;
  const hit = resolved.get(key);
  if (hit) return hit;
  const seen = new Set<string>();
  let usesSubgroups = false;
  const expand = (file: string): string => {
    const text = sources.get(file);
    if (text === undefined) throw new Error(`shader ${file} not found in shaders/`);
    seen.add(file);
    return text.replace(/^#include "([^"]+)"\s*$/gm, (_, inc: string) => {
      if (seen.has(inc)) return '';
      const half = inc.replace(/\.wgsl$/, '.f16.wgsl');
      if (variant.halfKv && sources.has(half)) {
        seen.add(inc);
        return expand(half);
      }
      const sub = inc.replace(/\.wgsl$/, '.subgroups.wgsl');
      if (variant.subgroups && sources.has(sub)) {
        seen.add(inc);
        usesSubgroups = true;
        return expand(sub);
      }
      return expand(inc);
    });
  };
  const body = expand(name);
  const out = usesSubgroups ? `enable subgroups;\n${body}` : body;
  resolved.set(key, out);
  return out;
}
