// Accumulator set-up and epilogues shared by the AVX-512 GEMM kernels
// (gemm_avx512.cc, gemm_avx512bf16.cc). Everything has internal linkage and
// is included only by translation units built with AVX-512 flags.
#pragma once
#include <immintrin.h>

#include "cpu/simd/gemm_isa.h"
#include "cpu/simd/vec_math_avx512.h"

namespace vl {
namespace {

// silu(g) * u with silu(g) = g / (1 + exp(-g)).
inline __m512 swiglu512(__m512 g, __m512 u) { return _mm512_mul_ps(silu512(g), u); }

inline __mmask16 mask_for(int n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1u);
}

// Zeroes the accumulators and prefetches the rows that finish() will read
// (partial sums, residual) or write: a C tile that has left the cache costs
// a memory round trip per line, which the k loop hides when requested now.
template <int MR>
inline void start(const GemmTile* t, __m512* c0, __m512* c1) {
  const int m = t->m < MR ? t->m : MR;
  if (t->acc)
    for (int i = 0; i < m; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(t->acc + i * t->ldacc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(t->acc + i * t->ldacc + 16), _MM_HINT_T0);
    }
  if (t->next)
    for (int i = 0; i < MR; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(t->next + i * t->ldnext), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(t->next + i * t->ldnext + 16), _MM_HINT_T0);
    }
  if (t->c != t->acc)
    for (int i = 0; i < m; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(t->c + i * t->ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(t->c + i * t->ldc + 16), _MM_HINT_T0);
    }
  if (t->final_store && t->res)
    for (int i = 0; i < m; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(t->res + i * t->ldres), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(t->res + i * t->ldres + 16), _MM_HINT_T0);
    }
  _Pragma("GCC unroll 16") for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
}

// Adds the partial sums (after the k loop, so their loads are not on the
// critical path), then stores raw sums or applies the epilogue. Row loops
// run to the constant MR, fully unrolled, with an early exit: a loop bound
// by the row count would make GCC keep the accumulators on the stack.
template <int MR>
inline void finish(const GemmTile* t, __m512* c0, __m512* c1) {
  const int m = t->m;
  if (t->acc) {
    if (t->n == 32) {
      _Pragma("GCC unroll 16") for (int i = 0; i < MR; ++i) {
        if (i >= m) break;
        c0[i] = _mm512_add_ps(c0[i], _mm512_loadu_ps(t->acc + i * t->ldacc));
        c1[i] = _mm512_add_ps(c1[i], _mm512_loadu_ps(t->acc + i * t->ldacc + 16));
      }
    } else {
      const __mmask16 k0 = mask_for(t->n), k1 = mask_for(t->n - 16);
      _Pragma("GCC unroll 16") for (int i = 0; i < MR; ++i) {
        if (i >= m) break;
        c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(k0, t->acc + i * t->ldacc));
        c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(k1, t->acc + i * t->ldacc + 16));
      }
    }
  }
  if (!t->final_store && t->n == 32) {
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; ++i) {
      if (i >= m) break;
      _mm512_storeu_ps(t->c + i * t->ldc, c0[i]);
      _mm512_storeu_ps(t->c + i * t->ldc + 16, c1[i]);
    }
    return;
  }
  if (!t->final_store) {
    const __mmask16 k0 = mask_for(t->n), k1 = mask_for(t->n - 16);
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; ++i) {
      if (i >= m) break;
      _mm512_mask_storeu_ps(t->c + i * t->ldc, k0, c0[i]);
      _mm512_mask_storeu_ps(t->c + i * t->ldc + 16, k1, c1[i]);
    }
    return;
  }
  if (t->act == kGemmActSwiglu) {
    // Bias is not used with SwiGLU (the launcher never passes one).
    const __mmask16 k0 = mask_for(t->nout);
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; ++i) {
      if (i >= m) break;
      __m512 v = swiglu512(c0[i], c1[i]);
      if (t->res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k0, t->res + i * t->ldres));
      _mm512_mask_storeu_ps(t->c + i * t->ldc, k0, v);
    }
    return;
  }
  if (t->nout == 32) {
    const __m512 b0 = t->bias ? _mm512_loadu_ps(t->bias) : _mm512_setzero_ps();
    const __m512 b1 = t->bias ? _mm512_loadu_ps(t->bias + 16) : _mm512_setzero_ps();
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; ++i) {
      if (i >= m) break;
      __m512 v0 = _mm512_add_ps(c0[i], b0), v1 = _mm512_add_ps(c1[i], b1);
      if (t->res) {
        v0 = _mm512_add_ps(v0, _mm512_loadu_ps(t->res + i * t->ldres));
        v1 = _mm512_add_ps(v1, _mm512_loadu_ps(t->res + i * t->ldres + 16));
      }
      _mm512_storeu_ps(t->c + i * t->ldc, v0);
      _mm512_storeu_ps(t->c + i * t->ldc + 16, v1);
    }
    return;
  }
  const __mmask16 k0 = mask_for(t->nout), k1 = mask_for(t->nout - 16);
  const __m512 b0 = t->bias ? _mm512_maskz_loadu_ps(k0, t->bias) : _mm512_setzero_ps();
  const __m512 b1 = t->bias ? _mm512_maskz_loadu_ps(k1, t->bias + 16) : _mm512_setzero_ps();
  _Pragma("GCC unroll 16") for (int i = 0; i < MR; ++i) {
    if (i >= m) break;
    __m512 v0 = _mm512_add_ps(c0[i], b0), v1 = _mm512_add_ps(c1[i], b1);
    if (t->res) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(k0, t->res + i * t->ldres));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(k1, t->res + i * t->ldres + 16));
    }
    _mm512_mask_storeu_ps(t->c + i * t->ldc, k0, v0);
    _mm512_mask_storeu_ps(t->c + i * t->ldc + 16, k1, v1);
  }
}


// Stores the transpose of v[0..MR) (MR rows of 16 lanes): lane j of every row
// goes to the MR floats at d + j * MR. The stores are full 16-lane ones in
// increasing order, each one's extra lanes overwritten by the next; only the
// 16th is masked when mask_last (masked stores are slow on some cores, and
// past the panel's end lies memory another thread may be packing).
template <int MR>
inline void store_transposed(__m512* v, float* d, bool mask_last) {
  for (int i = MR; i < 16; ++i) v[i] = _mm512_setzero_ps();
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(v[i], v[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(v[i], v[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    v[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    v[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    v[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    v[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  // v[4q + r], 128-bit lane L: column 4L + r of rows 4q..4q+3. Two lane shuffles finish it.
  for (int i = 0; i < 16; i += 8) {
    for (int r = 0; r < 4; ++r) {
      t[i + r] = _mm512_shuffle_f32x4(v[i + r], v[i + 4 + r], 0x88);      // lanes 0,2 of each
      t[i + 4 + r] = _mm512_shuffle_f32x4(v[i + r], v[i + 4 + r], 0xdd);  // lanes 1,3 of each
    }
  }
  for (int r = 0; r < 8; ++r) _mm512_storeu_ps(d + r * MR, _mm512_shuffle_f32x4(t[r], t[8 + r], 0x88));
  for (int r = 0; r < 7; ++r) _mm512_storeu_ps(d + (8 + r) * MR, _mm512_shuffle_f32x4(t[r], t[8 + r], 0xdd));
  const __m512 last = _mm512_shuffle_f32x4(t[7], t[15], 0xdd);
  if (mask_last)
    _mm512_mask_storeu_ps(d + 15 * MR, static_cast<__mmask16>((1u << MR) - 1u), last);
  else
    _mm512_storeu_ps(d + 15 * MR, last);
}

}  // namespace
}  // namespace vl
