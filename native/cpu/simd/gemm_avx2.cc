// AVX2 + FMA GEMM micro-kernels: f32 tile 6x16 (12 ymm accumulators, two B
// vectors, one broadcast); bf16 weights widened in registers, tile 4x16.
#include <immintrin.h>

#include "cpu/simd/gemm_isa.h"
#include "cpu/simd/gemm_pack_generic.h"
#include "cpu/simd/vec_math_avx2.h"

namespace vl {
namespace {

constexpr int kMr = 6;
constexpr int kNr = 16;
constexpr int kMrBf = 4;

inline __m256 swiglu256(__m256 g, __m256 u) { return _mm256_mul_ps(silu256(g), u); }

// Partial vectors go through a small buffer: AVX2 has masked moves only for
// whole 32-bit lanes (maskload/maskstore), which is what these use.
inline __m256i lane_mask(int n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}
inline __m256 load_n(const float* p, int n) {
  if (n >= 8) return _mm256_loadu_ps(p);
  if (n <= 0) return _mm256_setzero_ps();
  return _mm256_maskload_ps(p, lane_mask(n));
}
inline void store_n(float* p, int n, __m256 v) {
  if (n >= 8) return _mm256_storeu_ps(p, v);
  if (n > 0) _mm256_maskstore_ps(p, lane_mask(n), v);
}

template <int MR>
inline void start(const GemmTile* t, __m256* c0, __m256* c1) {
  _Pragma("GCC unroll 8") for (int i = 0; i < MR; ++i) {
    if (t->acc && i < t->m) {
      c0[i] = load_n(t->acc + i * t->ldacc, t->n);
      c1[i] = load_n(t->acc + i * t->ldacc + 8, t->n - 8);
    } else {
      c0[i] = c1[i] = _mm256_setzero_ps();
    }
  }
}

template <int MR>
inline void finish(const GemmTile* t, const __m256* c0, const __m256* c1) {
  const int m = t->m;
  if (!t->final_store) {
    _Pragma("GCC unroll 8") for (int i = 0; i < MR; ++i) {
      if (i >= m) break;
      store_n(t->c + i * t->ldc, t->n, c0[i]);
      store_n(t->c + i * t->ldc + 8, t->n - 8, c1[i]);
    }
    return;
  }
  if (t->act == kGemmActSwiglu) {
    _Pragma("GCC unroll 8") for (int i = 0; i < MR; ++i) {
      if (i >= m) break;
      __m256 v = swiglu256(c0[i], c1[i]);
      if (t->res) v = _mm256_add_ps(v, load_n(t->res + i * t->ldres, t->nout));
      store_n(t->c + i * t->ldc, t->nout, v);
    }
    return;
  }
  const __m256 b0 = t->bias ? load_n(t->bias, t->nout) : _mm256_setzero_ps();
  const __m256 b1 = t->bias ? load_n(t->bias + 8, t->nout - 8) : _mm256_setzero_ps();
  _Pragma("GCC unroll 8") for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
    __m256 v0 = _mm256_add_ps(c0[i], b0), v1 = _mm256_add_ps(c1[i], b1);
    if (t->res) {
      v0 = _mm256_add_ps(v0, load_n(t->res + i * t->ldres, t->nout));
      v1 = _mm256_add_ps(v1, load_n(t->res + i * t->ldres + 8, t->nout - 8));
    }
    store_n(t->c + i * t->ldc, t->nout, v0);
    store_n(t->c + i * t->ldc + 8, t->nout - 8, v1);
  }
}

void kernel_f32(const GemmTile* t) {
  __m256 c0[kMr], c1[kMr];
  start<kMr>(t, c0, c1);
  const float* a = static_cast<const float*>(t->a);
  const float* b = static_cast<const float*>(t->b);
  for (int64_t k = t->kc; k > 0; --k) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < kMr; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
    }
    a += kMr;
    b += kNr;
  }
  finish<kMr>(t, c0, c1);
}

void kernel_bf16_widen(const GemmTile* t) {
  __m256 c0[kMrBf], c1[kMrBf];
  start<kMrBf>(t, c0, c1);
  const float* a = static_cast<const float*>(t->a);
  const __m256i* b = static_cast<const __m256i*>(t->b);
  const __m256i hi = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t k = t->kc; k > 0; --k) {
    const __m256i p0 = _mm256_load_si256(b), p1 = _mm256_load_si256(b + 1);
    const __m256 e0 = _mm256_castsi256_ps(_mm256_slli_epi32(p0, 16));
    const __m256 o0 = _mm256_castsi256_ps(_mm256_and_si256(p0, hi));
    const __m256 e1 = _mm256_castsi256_ps(_mm256_slli_epi32(p1, 16));
    const __m256 o1 = _mm256_castsi256_ps(_mm256_and_si256(p1, hi));
#pragma GCC unroll 4
    for (int i = 0; i < kMrBf; ++i) {
      const __m256 ae = _mm256_broadcast_ss(a + 2 * i), ao = _mm256_broadcast_ss(a + 2 * i + 1);
      c0[i] = _mm256_fmadd_ps(ae, e0, c0[i]);
      c1[i] = _mm256_fmadd_ps(ae, e1, c1[i]);
      c0[i] = _mm256_fmadd_ps(ao, o0, c0[i]);
      c1[i] = _mm256_fmadd_ps(ao, o1, c1[i]);
    }
    a += 2 * kMrBf;
    b += 2;
  }
  finish<kMrBf>(t, c0, c1);
}

}  // namespace

const GemmKernels kGemmAvx2 = {
    "avx2",
    1,
    {kMr, kNr, 1, 4, 4, kernel_f32, pack_a_f32<kMr>, pack_a_cols_f32<kMr>, nullptr},
    {kMrBf, kNr, 2, 4, 2, kernel_bf16_widen, pack_a_pairs_f32<kMrBf>, pack_a_cols_pairs_f32<kMrBf>, nullptr},
    pack_b_f32<kNr>,
    pack_b_bf16<kNr>,
};

}  // namespace vl
