// Packed weights: where each value of a weight lives and how it is dequantised, for every kernel that reads weights
// (gemv, matmul, moe, embed). src/quant/formats.ts packs them. A weight W (N rows, K cols, PyTorch [out, in]) is one
// run of u32 words, so a quantized tensor needs one binding and an expert record is one contiguous range:
//   f32: N*K f32 bit patterns (bitcast<f32>)
//   f16: N rows of ceil(K/2) words, two f16 per word (unpack2x16float), low half first
//   q4:  N*G*4 words of nibbles, then N*G words of (scale, min) as two f16; G = ceil(K/32) groups of 32
//   q8:  N*G*8 words of bytes,   then N*G words of (scale, min)
// Quantized: w[n, k] = f32(q) * scale + min with unsigned q (0..15 or 0..255), asymmetric per group of 32.
// Element k of a group sits in word k/8 (q4, bits 4*(k%8)) or k/4 (q8, bits 8*(k%4)). Columns k >= K are padding.
//
// The includer declares the weights binding as `wq: array<vec4u>` (read as 16-byte units where aligned) and sets
// FORMAT; a weight starts at word `base` of wq (an expert slot of a stacked buffer, or 0).

override FORMAT: u32;
const F32 = 0u;
const F16 = 1u;
const Q4 = 2u;
const Q8 = 3u;

// A packed (N, K) weight at word `base` of wq.
struct Packed { base: u32, N: u32, K: u32 }

fn packed_word(i: u32) -> u32 { return wq[i >> 2u][i & 3u]; }

fn q_groups(K: u32) -> u32 { return (K + 31u) / 32u; }

// Nibbles 0..3 and 4..7 of a q4 word; bytes 0..3 of a q8 word; (scale, min) of a group.
fn q4_lo(w: u32) -> vec4f { return vec4f(vec4u(w, w >> 4u, w >> 8u, w >> 12u) & vec4u(15u)); }
fn q4_hi(w: u32) -> vec4f { return vec4f(vec4u(w >> 16u, w >> 20u, w >> 24u, w >> 28u) & vec4u(15u)); }
fn q8_unpack(w: u32) -> vec4f { return vec4f(vec4u(w, w >> 8u, w >> 16u, w >> 24u) & vec4u(255u)); }
fn q_scale_min(w: u32) -> vec2f { return unpack2x16float(w); }

// Word of the (scale, min) of group g of row n (q4 / q8).
fn q_scale_word(p: Packed, n: u32, g: u32) -> u32 {
  let G = q_groups(p.K);
  return p.base + p.N * G * select(8u, 4u, FORMAT == Q4) + n * G + g;
}

// ---- units: the 16 bytes a GEMV lane streams at a time --------------------------------------------------------
// A unit is 4 data words: 4 weights of f32, 8 of f16, 16 of q8, 32 (one group) of q4; unit u of a row starts at
// column u * UNIT_WEIGHTS.

override UNIT_WEIGHTS: u32 = select(select(select(4u, 8u, FORMAT == F16), 32u, FORMAT == Q4), 16u, FORMAT == Q8);

fn row_units(K: u32) -> u32 { return (K + UNIT_WEIGHTS - 1u) / UNIT_WEIGHTS; }

// The 4 data words of unit u of row n; words past the end of an f32/f16 row read as 0.
fn unit_data(p: Packed, n: u32, u: u32) -> vec4u {
  var first: u32;       // word of the unit's first weight
  var row_words: u32;   // f32/f16: data words of a row
  switch FORMAT {
    case Q4: { first = p.base + (n * q_groups(p.K) + u) * 4u; row_words = 0u; }
    case Q8: { first = p.base + n * q_groups(p.K) * 8u + u * 4u; row_words = 0u; }
    case F16: { row_words = (p.K + 1u) / 2u; first = p.base + n * row_words + u * 4u; }
    default: { row_words = p.K; first = p.base + n * p.K + u * 4u; }
  }
  let whole = row_words == 0u || 4u * u + 4u <= row_words;
  if (whole && (first & 3u) == 0u) { return wq[first >> 2u]; }
  var v = vec4u(0u);
  for (var i = 0u; i < 4u; i++) {
    if (row_words == 0u || 4u * u + i < row_words) { v[i] = packed_word(first + i); }
  }
  return v;
}

// (scale, min) of the group holding unit u of row n; (1, 0) for f32/f16.
fn unit_scale_min(p: Packed, n: u32, u: u32) -> vec2f {
  if (FORMAT == Q4) { return q_scale_min(packed_word(q_scale_word(p, n, u))); }
  if (FORMAT == Q8) { return q_scale_min(packed_word(q_scale_word(p, n, u / 2u))); }
  return vec2f(1.0, 0.0);
}

// Σ w·x over one unit: xc[0 .. UNIT_WEIGHTS/4) holds x over the unit's columns (zero past K), sx their sum. A
// quantized unit shares one (scale, min): Σ (q·scale + min)·x = scale·Σ q·x + min·Σ x.
fn unit_dot(wd: vec4u, sm: vec2f, xc: ptr<function, array<vec4f, 8>>, sx: f32) -> f32 {
  switch FORMAT {
    case F32: { return dot(bitcast<vec4f>(wd), xc[0]); }
    case F16: {
      return dot(vec4f(unpack2x16float(wd.x), unpack2x16float(wd.y)), xc[0])
           + dot(vec4f(unpack2x16float(wd.z), unpack2x16float(wd.w)), xc[1]);
    }
    case Q4: {
      var s = 0.0;
      for (var i = 0u; i < 4u; i++) { s += dot(q4_lo(wd[i]), xc[2u * i]) + dot(q4_hi(wd[i]), xc[2u * i + 1u]); }
      return s * sm.x + sm.y * sx;
    }
    default: {
      var s = 0.0;
      for (var i = 0u; i < 4u; i++) { s += dot(q8_unpack(wd[i]), xc[i]); }
      return s * sm.x + sm.y * sx;
    }
  }
}

// ---- eight dequantised weights w[n, 8c .. 8c+7] (the GEMM tiles), zero past K ------------------------------------

fn packed_w8(p: Packed, n: u32, c: u32) -> array<vec4f, 2> {
  let k = 8u * c;
  var lo: vec4f;
  var hi: vec4f;
  switch FORMAT {
    case Q4: {
      let g = c / 4u;
      let sm = q_scale_min(packed_word(q_scale_word(p, n, g)));
      let wd = packed_word(p.base + (n * q_groups(p.K) + g) * 4u + c % 4u);
      lo = q4_lo(wd) * sm.x + sm.y;
      hi = q4_hi(wd) * sm.x + sm.y;
    }
    case Q8: {
      let g = c / 4u;
      let sm = q_scale_min(packed_word(q_scale_word(p, n, g)));
      let w0 = p.base + (n * q_groups(p.K) + g) * 8u + (c % 4u) * 2u;
      lo = q8_unpack(packed_word(w0)) * sm.x + sm.y;
      hi = q8_unpack(packed_word(w0 + 1u)) * sm.x + sm.y;
    }
    default: {
      let u = unit_data(p, n, select(2u * c, c, FORMAT == F16));   // f16: one unit is 8 weights; f32: two units
      if (FORMAT == F16) {
        lo = vec4f(unpack2x16float(u.x), unpack2x16float(u.y));
        hi = vec4f(unpack2x16float(u.z), unpack2x16float(u.w));
      } else {
        lo = bitcast<vec4f>(u);
        hi = bitcast<vec4f>(unit_data(p, n, 2u * c + 1u));
      }
    }
  }
  if (k + 8u > p.K) {   // tail: padding columns contribute exactly 0
    for (var i = 0u; i < 4u; i++) {
      lo[i] = select(0.0, lo[i], k + i < p.K);
      hi[i] = select(0.0, hi[i], k + 4u + i < p.K);
    }
  }
  return array<vec4f, 2>(lo, hi);
}

// ---- one dequantised weight (embedding rows) ---------------------------------------------------------------

fn packed_at(p: Packed, n: u32, k: u32) -> f32 {
  switch FORMAT {
    case F32: { return bitcast<f32>(packed_word(p.base + n * p.K + k)); }
    case F16: { return unpack2x16float(packed_word(p.base + n * ((p.K + 1u) / 2u) + k / 2u))[k & 1u]; }
    case Q4: {
      let g = k / 32u;
      let q = (packed_word(p.base + (n * q_groups(p.K) + g) * 4u + (k % 32u) / 8u) >> (4u * (k % 8u))) & 15u;
      let sm = q_scale_min(packed_word(q_scale_word(p, n, g)));
      return f32(q) * sm.x + sm.y;
    }
    default: {
      let g = k / 32u;
      let q = (packed_word(p.base + (n * q_groups(p.K) + g) * 8u + (k % 32u) / 4u) >> (8u * (k % 4u))) & 255u;
      let sm = q_scale_min(packed_word(q_scale_word(p, n, g)));
      return f32(q) * sm.x + sm.y;
    }
  }
}
