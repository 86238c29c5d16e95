// Benchmark helpers: fill buffers with cheap pseudo-random words on the GPU, and the ceiling probes that every
// kernel timing is divided by (streaming read bandwidth, f32 FMA rate, the cost of a dependent dispatch).

struct Params { n: u32, mask: u32, seed: u32, iters: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> words: array<u32>;   // (n) the buffer being filled / probed

fn hash(x: u32) -> u32 {
  var h = x * 0x9E3779B1u;
  h ^= h >> 15u; h *= 0x85EBCA77u; h ^= h >> 13u; h *= 0xC2B2AE3Du; h ^= h >> 16u;
  return h;
}

// words[i] = hash(i, seed) & mask: the mask keeps f32 / f16 patterns finite (e.g. 0x3F7FFFFF, 0x3BFF3BFF).
@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = g.x + g.y * nwg.x * 256u;
  if (i < p.n) { words[i] = hash(i ^ p.seed) & p.mask; }
}

// Read ceiling: every thread streams vec4s with a grid stride; the sum is kept alive by a never-true store.
@group(0) @binding(2) var<storage, read> src: array<vec4u>;          // (n / 4)
@compute @workgroup_size(256)
fn read_sum(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * 256u;
  var s = vec4u(0u);
  for (var i = g.x; i < arrayLength(&src); i += stride) { s += src[i]; }
  if (all(s == vec4u(p.seed))) { words[g.x % p.n] = s.x; }
}

// FMA ceiling: `iters` rounds of 8 independent f32 FMA chains per thread (16 FLOP each).
@compute @workgroup_size(256)
fn fma_loop(@builtin(global_invocation_id) g: vec3u) {
  var a = vec4f(f32(g.x) * 1e-7, 1.0, 2.0, 3.0);
  var b = vec4f(0.5, f32(g.x) * 1e-7, 1.5, 2.5);
  let m = vec4f(0.9999);
  let c = vec4f(1e-4);
  for (var i = 0u; i < p.iters; i++) { a = fma(a, m, c); b = fma(b, m, c); }
  if (a.x + b.y == f32(p.seed)) { words[g.x % p.n] = 1u; }
}

// Packed int8 dot-product ceiling: `iters` rounds of 8 independent dot4I8Packed chains per thread, each feeding
// its own result back as the next packed operand (so nothing is loop-invariant): 4 multiply-adds (8 OP) each.
@compute @workgroup_size(256)
fn dot4_loop(@builtin(global_invocation_id) g: vec3u) {
  var x = array<u32, 8>(g.x, g.x ^ 1u, g.x ^ 2u, g.x ^ 3u, g.x ^ 4u, g.x ^ 5u, g.x ^ 6u, g.x ^ 7u);
  let m = 0x01FF03FDu ^ p.seed;
  for (var i = 0u; i < p.iters; i++) {
    for (var j = 0u; j < 8u; j++) { x[j] = bitcast<u32>(dot4I8Packed(x[j], m) + 0x01010101); }
  }
  if (x[0] + x[1] + x[2] + x[3] + x[4] + x[5] + x[6] + x[7] == p.seed) { words[g.x % p.n] = 1u; }
}

// Dispatch cost: one tiny workgroup that depends on the previous dispatch's write.
@compute @workgroup_size(64)
fn tick(@builtin(local_invocation_id) l: vec3u) {
  if (l.x == 0u) { words[0] = words[0] + 1u + (p.seed & 0u); }
}
