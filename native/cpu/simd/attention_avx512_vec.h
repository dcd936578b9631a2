// AVX-512 pieces shared by the f32 and the bf16 attention tiles: the vector
// type of attention_tile.inc, RoPE rotation of a row, and a 16x16 transpose
// of 32-bit elements. Included inside each file's anonymous namespace.
#pragma once

// Register tiles of 24 accumulators (16 with one query vector) out of 32 registers.
constexpr int s_rows(int qv) { return qv == 4 ? 6 : qv == 3 ? 8 : qv == 2 ? 12 : 16; }
constexpr int pv_rows(int qv) { return qv == 4 ? 6 : qv == 3 ? 8 : qv == 2 ? 12 : 16; }

struct Vec {
  using T = __m512;
  static constexpr int W = 16;
  static T zero() { return _mm512_setzero_ps(); }
  static T set1(float x) { return _mm512_set1_ps(x); }
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, T x) { _mm512_storeu_ps(p, x); }
  static T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static T max(T a, T b) { return _mm512_max_ps(a, b); }
  static T sub(T a, T b) { return _mm512_sub_ps(a, b); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  // 2^x = 2^n · 2^f, n = round(x), |f| <= 1/2; the polynomial (relative
  // error 2e-7) is a near-minimax fit of (2^f − 1)/f. vscalefps applies 2^n.
  static T exp2(T x) {
    x = _mm512_max_ps(_mm512_set1_ps(-127.0f), x);  // keeps NaN (max returns its second operand)
    const T n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const T f = _mm512_sub_ps(x, n);
    T p = _mm512_set1_ps(1.32647320e-3f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.67151392e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.55073358e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.40222424e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.93147004e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
  }
};

// out = rot(x)·scale: (a, b) -> (a·cos − b·sin, a·sin + b·cos) per channel pair.
inline void rotate_row(const float* x, const float* c, const float* s, float scale, float* out, int64_t D) {
  const __m512 sc = _mm512_set1_ps(scale);
  for (int64_t d = 0; d < D; d += 16) {
    const __mmask16 m = D - d >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (D - d)) - 1u);
    __m512 a = _mm512_maskz_loadu_ps(m, x + d);
    if (c) {
      const __m512 swapped = _mm512_permute_ps(a, 0xb1);
      a = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, c + d), _mm512_mul_ps(swapped, _mm512_maskz_loadu_ps(m, s + d)));
    }
    // Whole vectors unmasked: the transpose that reads them back right away
    // gets them forwarded from the store (a masked store would stall it).
    if (D - d >= 16)
      _mm512_storeu_ps(out + d, _mm512_mul_ps(a, sc));
    else
      _mm512_mask_storeu_ps(out + d, m, _mm512_mul_ps(a, sc));
  }
}

// 16×16 transpose in registers: 32-bit, then 64-bit interleaves within
// 128-bit lanes, then two rounds of 128-bit lane shuffles.
constexpr int kTB = 16;
void transpose(const float* src, int64_t ss, int64_t nr, int64_t nc, float* dst, int64_t ds, int64_t lanes) {
  const __mmask16 cols = static_cast<__mmask16>((1u << nc) - 1u);
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i)
    r[i] = i >= nr ? _mm512_setzero_ps() : nc == 16 ? _mm512_loadu_ps(src + i * ss) : _mm512_maskz_loadu_ps(cols, src + i * ss);
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // Now r[4i + c], 128-bit lane L: column 4L + c of rows 4i..4i+3.
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  __m512 out[16];
  for (int c = 0; c < 4; ++c) {
    const __m512 a_even = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88), a_odd = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
    const __m512 b_even = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
    const __m512 b_odd = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
    out[c] = _mm512_shuffle_f32x4(a_even, b_even, 0x88);
    out[8 + c] = _mm512_shuffle_f32x4(a_even, b_even, 0xdd);
    out[4 + c] = _mm512_shuffle_f32x4(a_odd, b_odd, 0x88);
    out[12 + c] = _mm512_shuffle_f32x4(a_odd, b_odd, 0xdd);
  }
  const __mmask16 keep = static_cast<__mmask16>((1u << lanes) - 1u);
  for (int c = 0; c < nc; ++c) _mm512_mask_storeu_ps(dst + c * ds, keep, out[c]);
}
