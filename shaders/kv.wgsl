// The K/V cache's storage, f32: four head dims a KvVec4, a vec4f (the f32 option, EngineOptions.kvCache).
// kv.f16.wgsl is the default build: the same names on f16, half the bytes a key.
alias KvVec4 = vec4f;
fn kv_load(w: KvVec4) -> vec4f { return w; }
fn kv_store(v: vec4f) -> KvVec4 { return v; }
