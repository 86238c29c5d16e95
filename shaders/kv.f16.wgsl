// The K/V cache's storage, f16: four head dims a KvVec4, two u32 of packed halves (pack2x16float needs no
// shader-f16). Rounding happens once, when a key or value is stored; everything after it computes in f32.
alias KvVec4 = vec2u;
fn kv_load(w: KvVec4) -> vec4f { return vec4f(unpack2x16float(w.x), unpack2x16float(w.y)); }
fn kv_store(v: vec4f) -> KvVec4 { return vec2u(pack2x16float(v.xy), pack2x16float(v.zw)); }
