// AVX2 + FMA + F16C versions. Compiled with -mavx2 -mfma -mf16c; called only
// when the CPU has them. No shared inline/template code here (see isa.h).
#include <immintrin.h>

#include <cstring>

#include "core/half.h"
#include "cpu/simd/isa.h"
#include "cpu/simd/kernels_common.h"
#include "cpu/simd/vec_math_avx2.h"

namespace vl {
namespace {

// bf16 rounding with integer ops: exact round-to-nearest-even, NaN kept quiet.
inline __m128i cvt8_f32_bf16(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i abs = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
  const __m256i is_nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
  r = _mm256_blendv_epi8(r, _mm256_or_si256(u, _mm256_set1_epi32(0x400000)), is_nan);
  r = _mm256_srli_epi32(r, 16);
  // pack 8 x u32 (values < 65536) to 8 x u16
  const __m128i lo = _mm256_castsi256_si128(r), hi = _mm256_extracti128_si256(r, 1);
  return _mm_packus_epi32(lo, hi);
}

void f32_to_bf16(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), cvt8_f32_bf16(_mm256_loadu_ps(s + i)));
  for (; i < n; ++i) d[i] = vl::f32_to_bf16(s[i]);
}
void bf16_to_f32(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i)));
    _mm256_storeu_ps(d + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
  }
  for (; i < n; ++i) d[i] = vl::bf16_to_f32(s[i]);
}
void f32_to_f16(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) d[i] = vl::f32_to_f16(s[i]);
}
void f16_to_f32(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  for (; i < n; ++i) d[i] = vl::f16_to_f32(s[i]);
}

#define VL_BINARY_AVX2(name, vop, sop)                                   \
  void name(const float* a, const float* b, float* o, int64_t n) {       \
    int64_t i = 0;                                                       \
    for (; i + 8 <= n; i += 8)                                           \
      _mm256_storeu_ps(o + i, vop(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i))); \
    for (; i < n; ++i) o[i] = a[i] sop b[i];                             \
  }
VL_BINARY_AVX2(add, _mm256_add_ps, +)
VL_BINARY_AVX2(sub, _mm256_sub_ps, -)
VL_BINARY_AVX2(mul, _mm256_mul_ps, *)
VL_BINARY_AVX2(div, _mm256_div_ps, /)

template <int op, bool s_first>
inline __m256 binary_op256(__m256 v, __m256 s) {
  const __m256 a = s_first ? s : v, b = s_first ? v : s;
  if (op == kBinaryAdd) return _mm256_add_ps(a, b);
  if (op == kBinarySub) return _mm256_sub_ps(a, b);
  if (op == kBinaryMul) return _mm256_mul_ps(a, b);
  return _mm256_div_ps(a, b);
}
template <int op, bool s_first>
void binary_scalar_t(const float* v, float s, float* o, int64_t n) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 x0 = _mm256_loadu_ps(v + i), x1 = _mm256_loadu_ps(v + i + 8);
    const __m256 x2 = _mm256_loadu_ps(v + i + 16), x3 = _mm256_loadu_ps(v + i + 24);
    _mm256_storeu_ps(o + i, binary_op256<op, s_first>(x0, vs));
    _mm256_storeu_ps(o + i + 8, binary_op256<op, s_first>(x1, vs));
    _mm256_storeu_ps(o + i + 16, binary_op256<op, s_first>(x2, vs));
    _mm256_storeu_ps(o + i + 24, binary_op256<op, s_first>(x3, vs));
  }
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(o + i, binary_op256<op, s_first>(_mm256_loadu_ps(v + i), vs));
  for (; i < n; ++i) {
    o[i] = s_first ? binary_element<op>(s, v[i]) : binary_element<op>(v[i], s);
  }
}
void binary_scalar(int op, const float* v, float s, float* o, int64_t n, int s_first) {
  with_binary_scalar(op, s_first, [&](auto op_c, auto first_c) {
    binary_scalar_t<decltype(op_c)::value, decltype(first_c)::value>(v, s, o, n);
  });
}

// 8x8 blocks transposed in registers (unpack, shuffle, lane permute).
void transpose32(const uint32_t* src, int64_t lds, uint32_t* dst, int64_t ldd, int64_t m, int64_t n) {
  const int64_t mb = m / 8 * 8, nb = n / 8 * 8;
  for (int64_t i = 0; i < mb; i += 8)
    for (int64_t j = 0; j < nb; j += 8) {
      __m256 r[8], t[8];
      for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(reinterpret_cast<const float*>(src + (j + k) * lds + i));
      for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
      }
      for (int k = 0; k < 8; k += 4) {
        r[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
        r[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xee);
        r[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        r[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xee);
      }
      float* d = reinterpret_cast<float*>(dst + i * ldd + j);
      for (int k = 0; k < 4; ++k) {
        _mm256_storeu_ps(d + k * ldd, _mm256_permute2f128_ps(r[k], r[k + 4], 0x20));
        _mm256_storeu_ps(d + (k + 4) * ldd, _mm256_permute2f128_ps(r[k], r[k + 4], 0x31));
      }
    }
  transpose32_edges(src, lds, dst, ldd, m, n, mb, nb);
}

inline __m256i col_mask256(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Up to NV vectors of columns held in registers while the rows go by; the
// last vector is masked to the columns left.
template <int NV>
inline void col_sum_block(const float* const* rows, int64_t nrows, int64_t c, int64_t left, float* acc) {
  const __m256i m = col_mask256(left - 8 * (NV - 1));
  __m256 a[NV];
  for (int j = 0; j + 1 < NV; ++j) a[j] = _mm256_loadu_ps(acc + c + 8 * j);
  a[NV - 1] = _mm256_maskload_ps(acc + c + 8 * (NV - 1), m);
  for (int64_t r = 0; r < nrows; ++r) {
    const float* p = rows[r] + c;
    for (int j = 0; j + 1 < NV; ++j) a[j] = _mm256_add_ps(a[j], _mm256_loadu_ps(p + 8 * j));
    a[NV - 1] = _mm256_add_ps(a[NV - 1], _mm256_maskload_ps(p + 8 * (NV - 1), m));
  }
  for (int j = 0; j + 1 < NV; ++j) _mm256_storeu_ps(acc + c + 8 * j, a[j]);
  _mm256_maskstore_ps(acc + c + 8 * (NV - 1), m, a[NV - 1]);
}

void col_sum(const float* const* rows, int64_t nrows, int64_t w, float* acc) {
  for (int64_t c = 0; c < w; c += 64) {
    const int64_t left = w - c < 64 ? w - c : 64;
    switch ((left + 7) / 8) {
      case 1: col_sum_block<1>(rows, nrows, c, left, acc); break;
      case 2: col_sum_block<2>(rows, nrows, c, left, acc); break;
      case 3: col_sum_block<3>(rows, nrows, c, left, acc); break;
      case 4: col_sum_block<4>(rows, nrows, c, left, acc); break;
      case 5: col_sum_block<5>(rows, nrows, c, left, acc); break;
      case 6: col_sum_block<6>(rows, nrows, c, left, acc); break;
      case 7: col_sum_block<7>(rows, nrows, c, left, acc); break;
      default: col_sum_block<8>(rows, nrows, c, left, acc); break;
    }
  }
}

float sum(const float* x, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
    a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + i + 24));
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
  const __m256 v = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  float s = _mm_cvtss_f32(h);
  for (; i < n; ++i) s += x[i];
  return s;
}

inline float hsum8(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  return _mm_cvtss_f32(h);
}

void exp_(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp256(_mm256_loadu_ps(x + i)));
  for (; i < n; ++i) {
    float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    t[0] = x[i];
    _mm256_storeu_ps(t, exp256(_mm256_loadu_ps(t)));
    y[i] = t[0];
  }
}

void silu(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, silu256(_mm256_loadu_ps(x + i)));
  }
  for (; i < n; ++i) {
    float e;
    const float neg = -x[i];
    exp_(&neg, &e, 1);
    y[i] = x[i] / (1.0f + e);
  }
}

void layer_norm_row(const float* x, const float* w, const float* b, float* y, int64_t n, float eps, float* mean_out,
                    float* rstd_out) {
  const float mean = sum(x, n) / static_cast<float>(n);
  const __m256 vm = _mm256_set1_ps(mean);
  __m256 a0 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vm);
    a0 = _mm256_fmadd_ps(d, d, a0);
  }
  float var = hsum8(a0);
  for (; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= static_cast<float>(n);
  const float rstd = 1.0f / __builtin_sqrtf(var + eps);
  const __m256 vr = _mm256_set1_ps(rstd);
  for (i = 0; i + 8 <= n; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
    if (w) v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
    if (b) v = _mm256_add_ps(v, _mm256_loadu_ps(b + i));
    _mm256_storeu_ps(y + i, v);
  }
  for (; i < n; ++i) {
    float v = (x[i] - mean) * rstd;
    if (w) v *= w[i];
    if (b) v += b[i];
    y[i] = v;
  }
  if (mean_out) *mean_out = mean;
  if (rstd_out) *rstd_out = rstd;
}

void softmax_row(const float* x, float* y, int64_t n, float* lse) {
  float mx = -__builtin_inff();
  for (int64_t i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  int64_t i = 0;
  const __m256 vm = _mm256_set1_ps(mx);
  __m256 acc = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    acc = _mm256_add_ps(acc, e);
    _mm256_storeu_ps(y + i, e);
  }
  float s = hsum8(acc);
  for (; i < n; ++i) {
    const float d = x[i] - mx;
    exp_(&d, y + i, 1);
    s += y[i];
  }
  const float inv = 1.0f / s;
  for (i = 0; i < n; ++i) y[i] *= inv;
  if (lse) *lse = mx + __builtin_logf(s);
}

float dot(const float* a, const float* b, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), a3);
  }
  for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
  float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// A function, not a namespace-scope constant: nothing in this file may run at load time.
inline __m256 one8() { return _mm256_set1_ps(1.0f); }

// silu'(x) from s = sigmoid(x): s * (1 + x * (1 - s))
inline __m256 dsilu256(__m256 x, __m256 s) {
  return _mm256_mul_ps(s, _mm256_add_ps(one8(), _mm256_mul_ps(x, _mm256_sub_ps(one8(), s))));
}

// The elementwise kernels below run their last partial block through the same
// vector code on zero-padded copies, so an element's result does not depend on
// where it falls in the array.
inline void silu_backward8(const float* x, const float* dy, float* dx) {
  const __m256 vx = _mm256_loadu_ps(x);
  const __m256 s = _mm256_div_ps(one8(), _mm256_add_ps(one8(), exp256(_mm256_sub_ps(_mm256_setzero_ps(), vx))));
  _mm256_storeu_ps(dx, _mm256_mul_ps(_mm256_loadu_ps(dy), dsilu256(vx, s)));
}

void silu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) silu_backward8(x + i, dy + i, dx + i);
  if (i < n) {
    float tx[8] = {0, 0, 0, 0, 0, 0, 0, 0}, td[8] = {0, 0, 0, 0, 0, 0, 0, 0}, to[8];
    std::memcpy(tx, x + i, (n - i) * sizeof(float));
    std::memcpy(td, dy + i, (n - i) * sizeof(float));
    silu_backward8(tx, td, to);
    std::memcpy(dx + i, to, (n - i) * sizeof(float));
  }
}

inline void swiglu_gate8(const float* a1, const float* a2, float* h) {
  _mm256_storeu_ps(h, _mm256_mul_ps(silu256(_mm256_loadu_ps(a1)), _mm256_loadu_ps(a2)));
}

void swiglu_gate(const float* a1, const float* a2, float* h, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) swiglu_gate8(a1 + i, a2 + i, h + i);
  if (i < n) {
    float t1[8] = {0, 0, 0, 0, 0, 0, 0, 0}, t2[8] = {0, 0, 0, 0, 0, 0, 0, 0}, to[8];
    std::memcpy(t1, a1 + i, (n - i) * sizeof(float));
    std::memcpy(t2, a2 + i, (n - i) * sizeof(float));
    swiglu_gate8(t1, t2, to);
    std::memcpy(h + i, to, (n - i) * sizeof(float));
  }
}

inline void swiglu_gate_backward8(const float* dh, const float* a1, const float* a2, float* da1, float* da2) {
  const __m256 v1 = _mm256_loadu_ps(a1), vdh = _mm256_loadu_ps(dh);
  const __m256 e = _mm256_add_ps(one8(), exp256(_mm256_sub_ps(_mm256_setzero_ps(), v1)));
  const __m256 s = _mm256_div_ps(one8(), e);
  _mm256_storeu_ps(da1, _mm256_mul_ps(_mm256_mul_ps(vdh, _mm256_loadu_ps(a2)), dsilu256(v1, s)));
  _mm256_storeu_ps(da2, _mm256_mul_ps(vdh, _mm256_div_ps(v1, e)));
}

void swiglu_gate_backward(const float* dh, const float* a1, const float* a2, float* da1, float* da2, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) swiglu_gate_backward8(dh + i, a1 + i, a2 + i, da1 + i, da2 + i);
  if (i < n) {
    float td[8] = {0, 0, 0, 0, 0, 0, 0, 0}, t1[8] = {0, 0, 0, 0, 0, 0, 0, 0}, t2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    float o1[8], o2[8];
    std::memcpy(td, dh + i, (n - i) * sizeof(float));
    std::memcpy(t1, a1 + i, (n - i) * sizeof(float));
    std::memcpy(t2, a2 + i, (n - i) * sizeof(float));
    swiglu_gate_backward8(td, t1, t2, o1, o2);
    std::memcpy(da1 + i, o1, (n - i) * sizeof(float));
    std::memcpy(da2 + i, o2, (n - i) * sizeof(float));
  }
}

void layer_norm_backward_row(const float* dy, const float* x, const float* w, float mean, float rstd, float* dx,
                             float* dw, float* db, int64_t n) {
  const __m256 vm = _mm256_set1_ps(mean), vr = _mm256_set1_ps(rstd);
  __m256 sg = _mm256_setzero_ps(), sgx = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 d = _mm256_loadu_ps(dy + i);
    const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
    const __m256 g = w ? _mm256_mul_ps(d, _mm256_loadu_ps(w + i)) : d;
    sg = _mm256_add_ps(sg, g);
    sgx = _mm256_fmadd_ps(g, xh, sgx);
    if (dw) {  // the row is in L1 now: accumulate the weight gradients in the same pass
      _mm256_storeu_ps(dw + i, _mm256_fmadd_ps(d, xh, _mm256_loadu_ps(dw + i)));
      _mm256_storeu_ps(db + i, _mm256_add_ps(_mm256_loadu_ps(db + i), d));
    }
  }
  float s_g = hsum8(sg), s_gx = hsum8(sgx);
  for (; i < n; ++i) {
    const float xh = (x[i] - mean) * rstd, g = w ? dy[i] * w[i] : dy[i];
    s_g += g;
    s_gx += g * xh;
    if (dw) {
      dw[i] += dy[i] * xh;
      db[i] += dy[i];
    }
  }
  const float inv_n = 1.0f / static_cast<float>(n);
  const float a = s_g * inv_n, b = s_gx * inv_n;
  const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 d = _mm256_loadu_ps(dy + i);
    const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
    const __m256 g = w ? _mm256_mul_ps(d, _mm256_loadu_ps(w + i)) : d;
    _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_fnmadd_ps(xh, vb, _mm256_sub_ps(g, va)), vr));
  }
  for (; i < n; ++i) {
    const float xh = (x[i] - mean) * rstd, g = w ? dy[i] * w[i] : dy[i];
    dx[i] = (g - a - xh * b) * rstd;
  }
}

}  // namespace

const IsaKernels kAvx2Kernels = {"avx2", f32_to_bf16, bf16_to_f32, f32_to_f16, f16_to_f32, add, sub, mul, div,
                                 binary_scalar, transpose32, sum, col_sum, layer_norm_row, softmax_row, silu, exp_,
                                 dot, silu_backward, swiglu_gate, swiglu_gate_backward, layer_norm_backward_row};

}  // namespace vl
