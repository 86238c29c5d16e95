// Weight storage formats (src/quant/formats.ts packs them). A weight W (N rows, K cols, PyTorch [out, in])
// is one array<u32>, so a quantized tensor needs one binding and an expert record is one contiguous range:
//   f32: N*K f32 bit patterns (bitcast<f32>)
//   f16: N rows of ceil(K/2) words, two f16 per word (unpack2x16float), low half first
//   q4:  N*G*4 words of nibbles, then N*G words of (scale, min) as two f16; G = ceil(K/32) groups of 32
//   q8:  N*G*8 words of bytes,   then N*G words of (scale, min)
// Quantized: w[n, k] = f32(q) * scale + min with unsigned q (0..15 or 0..255), asymmetric per group of 32.
// Element k of a group sits in word k/8 (q4, bits 4*(k%8)) or k/4 (q8, bits 8*(k%4)).
// Columns k >= K are padding: kernels must not read x there (or read 0).

// Nibbles 0..3 and 4..7 of a q4 word.
fn q4_lo(w: u32) -> vec4f { return vec4f(vec4u(w, w >> 4u, w >> 8u, w >> 12u) & vec4u(15u)); }
fn q4_hi(w: u32) -> vec4f { return vec4f(vec4u(w >> 16u, w >> 20u, w >> 24u, w >> 28u) & vec4u(15u)); }
// Bytes 0..3 of a q8 word.
fn q8_unpack(w: u32) -> vec4f { return vec4f(vec4u(w, w >> 8u, w >> 16u, w >> 24u) & vec4u(255u)); }
// (scale, min) of one group.
fn q_scale_min(w: u32) -> vec2f { return unpack2x16float(w); }
