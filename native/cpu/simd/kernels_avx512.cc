// AVX-512 (F, BW, VL, DQ) versions. Compiled with -mavx512f -mavx512bw
// -mavx512vl -mavx512dq -mfma -mf16c; called only when the CPU has them.
// bf16 rounding uses integer ops rather than vcvtneps2bf16, which flushes
// subnormals to zero and would disagree with the scalar reference.
// GCC 12 warns about _mm512_undefined_*() inside its own avx512fintrin.h
// (a false positive at every inlined call site); nothing of ours is affected.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "core/half.h"
#include "cpu/simd/isa.h"
#include "cpu/simd/kernels_common.h"
#include "cpu/simd/vec_math_avx512.h"

namespace vl {
namespace {

inline __m256i cvt16_f32_bf16(__m512 v) { return _mm512_cvtepi32_epi16(_mm512_srli_epi32(bf16_round_bits512(v), 16)); }

void f32_to_bf16(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), cvt16_f32_bf16(_mm512_loadu_ps(s + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm256_mask_storeu_epi16(d + i, m, cvt16_f32_bf16(_mm512_maskz_loadu_ps(m, s + i)));
  }
}
void bf16_to_f32(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
    _mm512_storeu_ps(d + i, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
  }
  for (; i < n; ++i) d[i] = vl::bf16_to_f32(s[i]);
}
void f32_to_f16(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i),
                        _mm512_cvtps_ph(_mm512_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) d[i] = vl::f32_to_f16(s[i]);
}
void f16_to_f32(const uint16_t* s, float* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(d + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i))));
  for (; i < n; ++i) d[i] = vl::f16_to_f32(s[i]);
}

#define VL_BINARY_AVX512(name, vop, sop)                                  \
  void name(const float* a, const float* b, float* o, int64_t n) {        \
    int64_t i = 0;                                                        \
    for (; i + 16 <= n; i += 16)                                          \
      _mm512_storeu_ps(o + i, vop(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i))); \
    for (; i < n; ++i) o[i] = a[i] sop b[i];                              \
  }
VL_BINARY_AVX512(add, _mm512_add_ps, +)
VL_BINARY_AVX512(sub, _mm512_sub_ps, -)
VL_BINARY_AVX512(mul, _mm512_mul_ps, *)
VL_BINARY_AVX512(div, _mm512_div_ps, /)

template <int op, bool s_first>
inline __m512 binary_op512(__m512 v, __m512 s) {
  const __m512 a = s_first ? s : v, b = s_first ? v : s;
  if (op == kBinaryAdd) return _mm512_add_ps(a, b);
  if (op == kBinarySub) return _mm512_sub_ps(a, b);
  if (op == kBinaryMul) return _mm512_mul_ps(a, b);
  return _mm512_div_ps(a, b);
}
template <int op, bool s_first>
void binary_scalar_t(const float* v, float s, float* o, int64_t n) {
  const __m512 vs = _mm512_set1_ps(s);
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512 x0 = _mm512_loadu_ps(v + i), x1 = _mm512_loadu_ps(v + i + 16);
    const __m512 x2 = _mm512_loadu_ps(v + i + 32), x3 = _mm512_loadu_ps(v + i + 48);
    _mm512_storeu_ps(o + i, binary_op512<op, s_first>(x0, vs));
    _mm512_storeu_ps(o + i + 16, binary_op512<op, s_first>(x1, vs));
    _mm512_storeu_ps(o + i + 32, binary_op512<op, s_first>(x2, vs));
    _mm512_storeu_ps(o + i + 48, binary_op512<op, s_first>(x3, vs));
  }
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(o + i, binary_op512<op, s_first>(_mm512_loadu_ps(v + i), vs));
  for (; i < n; ++i) {
    o[i] = s_first ? binary_element<op>(s, v[i]) : binary_element<op>(v[i], s);
  }
}
void binary_scalar(int op, const float* v, float s, float* o, int64_t n, int s_first) {
  with_binary_scalar(op, s_first, [&](auto op_c, auto first_c) {
    binary_scalar_t<decltype(op_c)::value, decltype(first_c)::value>(v, s, o, n);
  });
}

// 16x16 blocks transposed in registers: 32-bit and 64-bit unpacks, then two
// rounds of 128-bit lane shuffles.
void transpose32(const uint32_t* src, int64_t lds, uint32_t* dst, int64_t ldd, int64_t m, int64_t n) {
  const int64_t mb = m / 16 * 16, nb = n / 16 * 16;
  for (int64_t i = 0; i < mb; i += 16)
    for (int64_t j = 0; j < nb; j += 16) {
      __m512 v[16], t[16];
      for (int k = 0; k < 16; ++k) v[k] = _mm512_loadu_ps(reinterpret_cast<const float*>(src + (j + k) * lds + i));
      for (int k = 0; k < 16; k += 2) {
        t[k] = _mm512_unpacklo_ps(v[k], v[k + 1]);
        t[k + 1] = _mm512_unpackhi_ps(v[k], v[k + 1]);
      }
      for (int k = 0; k < 16; k += 4) {
        v[k] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[k]), _mm512_castps_pd(t[k + 2])));
        v[k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[k]), _mm512_castps_pd(t[k + 2])));
        v[k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[k + 1]), _mm512_castps_pd(t[k + 3])));
        v[k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[k + 1]), _mm512_castps_pd(t[k + 3])));
      }
      for (int k = 0; k < 16; k += 8)
        for (int r = 0; r < 4; ++r) {
          t[k + r] = _mm512_shuffle_f32x4(v[k + r], v[k + 4 + r], 0x88);
          t[k + 4 + r] = _mm512_shuffle_f32x4(v[k + r], v[k + 4 + r], 0xdd);
        }
      float* d = reinterpret_cast<float*>(dst + i * ldd + j);
      for (int r = 0; r < 8; ++r) {
        _mm512_storeu_ps(d + r * ldd, _mm512_shuffle_f32x4(t[r], t[8 + r], 0x88));
        _mm512_storeu_ps(d + (8 + r) * ldd, _mm512_shuffle_f32x4(t[r], t[8 + r], 0xdd));
      }
    }
  transpose32_edges(src, lds, dst, ldd, m, n, mb, nb);
}

// Up to NV vectors of columns held in registers while the rows go by; the
// last vector is masked to the columns left.
template <int NV>
inline void col_sum_block(const float* const* rows, int64_t nrows, int64_t c, int64_t left, float* acc) {
  const int64_t rest = left - 16 * (NV - 1);
  const __mmask16 m = rest >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << rest) - 1u);
  __m512 a[NV];
  for (int j = 0; j + 1 < NV; ++j) a[j] = _mm512_loadu_ps(acc + c + 16 * j);
  a[NV - 1] = _mm512_maskz_loadu_ps(m, acc + c + 16 * (NV - 1));
  for (int64_t r = 0; r < nrows; ++r) {
    const float* p = rows[r] + c;
    for (int j = 0; j + 1 < NV; ++j) a[j] = _mm512_add_ps(a[j], _mm512_loadu_ps(p + 16 * j));
    a[NV - 1] = _mm512_add_ps(a[NV - 1], _mm512_maskz_loadu_ps(m, p + 16 * (NV - 1)));
  }
  for (int j = 0; j + 1 < NV; ++j) _mm512_storeu_ps(acc + c + 16 * j, a[j]);
  _mm512_mask_storeu_ps(acc + c + 16 * (NV - 1), m, a[NV - 1]);
}

void col_sum(const float* const* rows, int64_t nrows, int64_t w, float* acc) {
  for (int64_t c = 0; c < w; c += 128) {
    const int64_t left = w - c < 128 ? w - c : 128;
    switch ((left + 15) / 16) {
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
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
    a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_loadu_ps(x + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_loadu_ps(x + i + 48));
  }
  for (; i + 16 <= n; i += 16) a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
  if (i < n) a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << (n - i)) - 1u), x + i));
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

inline __mmask16 tail_mask(int64_t left) { return static_cast<__mmask16>((1u << left) - 1u); }

void exp_(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp512(_mm512_loadu_ps(x + i)));
  if (i < n) _mm512_mask_storeu_ps(y + i, tail_mask(n - i), exp512(_mm512_maskz_loadu_ps(tail_mask(n - i), x + i)));
}

void silu(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, silu512(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

void layer_norm_row(const float* x, const float* w, const float* b, float* y, int64_t n, float eps, float* mean_out,
                    float* rstd_out) {
  const float mean = sum(x, n) / static_cast<float>(n);
  const __m512 vm = _mm512_set1_ps(mean);
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(x + i), vm);
    const __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm);
    a0 = _mm512_fmadd_ps(d0, d0, a0);
    a1 = _mm512_fmadd_ps(d1, d1, a1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), vm);
    a0 = _mm512_fmadd_ps(d, d, a0);
  }
  const float var = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) / static_cast<float>(n);
  const float rstd = 1.0f / __builtin_sqrtf(var + eps);
  const __m512 vr = _mm512_set1_ps(rstd);
  for (i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), vr);
    if (w) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i));
    if (b) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b + i));
    _mm512_mask_storeu_ps(y + i, m, v);
  }
  if (mean_out) *mean_out = mean;
  if (rstd_out) *rstd_out = rstd;
}

void softmax_row(const float* x, float* y, int64_t n, float* lse) {
  __m512 vmax = _mm512_set1_ps(-__builtin_inff());
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    vmax = _mm512_mask_max_ps(vmax, m, vmax, _mm512_maskz_loadu_ps(m, x + i));
  }
  const float mx = _mm512_reduce_max_ps(vmax);
  const __m512 vm = _mm512_set1_ps(mx);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm)));
    acc = _mm512_add_ps(acc, e);
    _mm512_mask_storeu_ps(y + i, m, e);
  }
  const float s = _mm512_reduce_add_ps(acc);
  const __m512 inv = _mm512_set1_ps(1.0f / s);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i), inv));
  }
  if (lse) *lse = mx + __builtin_logf(s);
}

float dot(const float* a, const float* b, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), a1);
    a2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), a2);
    a3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), a3);
  }
  for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), a0);
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), a1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

inline __mmask16 block_mask(int64_t i, int64_t n) {
  return n - i >= 16 ? static_cast<__mmask16>(0xffff) : tail_mask(n - i);
}

// silu'(x) from s = sigmoid(x): s * (1 + x * (1 - s))
inline __m512 dsilu512(__m512 x, __m512 s) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_mul_ps(s, _mm512_add_ps(one, _mm512_mul_ps(x, _mm512_sub_ps(one, s))));
}

void silu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = block_mask(i, n);
    const __m512 vx = _mm512_maskz_loadu_ps(m, x + i);
    const __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), vx))));
    _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + i), dsilu512(vx, s)));
  }
}

void swiglu_gate(const float* a1, const float* a2, float* h, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = block_mask(i, n);
    _mm512_mask_storeu_ps(h + i, m, _mm512_mul_ps(silu512(_mm512_maskz_loadu_ps(m, a1 + i)), _mm512_maskz_loadu_ps(m, a2 + i)));
  }
}

void swiglu_gate_backward(const float* dh, const float* a1, const float* a2, float* da1, float* da2, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = block_mask(i, n);
    const __m512 v1 = _mm512_maskz_loadu_ps(m, a1 + i), vdh = _mm512_maskz_loadu_ps(m, dh + i);
    const __m512 e = _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), v1)));
    const __m512 s = _mm512_div_ps(one, e);
    _mm512_mask_storeu_ps(da1 + i, m, _mm512_mul_ps(_mm512_mul_ps(vdh, _mm512_maskz_loadu_ps(m, a2 + i)), dsilu512(v1, s)));
    _mm512_mask_storeu_ps(da2 + i, m, _mm512_mul_ps(vdh, _mm512_div_ps(v1, e)));
  }
}

void layer_norm_backward_row(const float* dy, const float* x, const float* w, float mean, float rstd, float* dx,
                             float* dw, float* db, int64_t n) {
  const __m512 vm = _mm512_set1_ps(mean), vr = _mm512_set1_ps(rstd);
  __m512 sg = _mm512_setzero_ps(), sgx = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = block_mask(i, n);
    const __m512 d = _mm512_maskz_loadu_ps(m, dy + i);  // zero past the end: adds nothing below
    const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), vr);
    const __m512 g = w ? _mm512_mul_ps(d, _mm512_maskz_loadu_ps(m, w + i)) : d;
    sg = _mm512_add_ps(sg, g);
    sgx = _mm512_fmadd_ps(g, xh, sgx);
    if (dw) {  // the row is in L1 now: accumulate the weight gradients in the same pass
      _mm512_mask_storeu_ps(dw + i, m, _mm512_fmadd_ps(d, xh, _mm512_maskz_loadu_ps(m, dw + i)));
      _mm512_mask_storeu_ps(db + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, db + i), d));
    }
  }
  const float inv_n = 1.0f / static_cast<float>(n);
  const __m512 va = _mm512_set1_ps(_mm512_reduce_add_ps(sg) * inv_n);
  const __m512 vb = _mm512_set1_ps(_mm512_reduce_add_ps(sgx) * inv_n);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = block_mask(i, n);
    const __m512 d = _mm512_maskz_loadu_ps(m, dy + i);
    const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vm), vr);
    const __m512 g = w ? _mm512_mul_ps(d, _mm512_maskz_loadu_ps(m, w + i)) : d;
    _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(_mm512_fnmadd_ps(xh, vb, _mm512_sub_ps(g, va)), vr));
  }
}

}  // namespace

const IsaKernels kAvx512Kernels = {"avx512", f32_to_bf16, bf16_to_f32, f32_to_f16, f16_to_f32, add, sub, mul, div,
                                   binary_scalar, transpose32, sum, col_sum, layer_norm_row, softmax_row, silu, exp_,
                                   dot, silu_backward, swiglu_gate, swiglu_gate_backward, layer_norm_backward_row};

}  // namespace vl
