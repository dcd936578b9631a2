// bf16 GEMM with AVX512_BF16: vdpbf16ps multiplies 16 pairs of bf16 and adds
// both products to an f32 lane, so one instruction covers two k steps of a
// 16-column vector. Tile 14x32 like the f32 kernel: 28 accumulators, two B
// vectors (32 columns x 2 k) per step, A pairs broadcast as 32-bit words.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu/simd/gemm_avx512_tile.h"
#include "cpu/simd/gemm_isa.h"

namespace vl {
namespace {

constexpr int kMr = 14;
constexpr int kNr = 32;

void kernel_bf16(const GemmTile* t) {
  __m512 c0[kMr], c1[kMr];
  start<kMr>(t, c0, c1);
  const int* a = static_cast<const int*>(t->a);
  const __m512i* b = static_cast<const __m512i*>(t->b);
  int64_t k = t->kc;
  for (; k >= 2; k -= 2) {
#pragma GCC unroll 2
    for (int u = 0; u < 2; ++u) {
      const __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 1);
#pragma GCC unroll 14
      for (int i = 0; i < kMr; ++i) {
        const __m512bh ai = (__m512bh)_mm512_set1_epi32(a[i]);
        c0[i] = _mm512_dpbf16_ps(c0[i], ai, b0);
        c1[i] = _mm512_dpbf16_ps(c1[i], ai, b1);
      }
      a += kMr;
      b += 2;
    }
  }
  if (k) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 1);
#pragma GCC unroll 14
    for (int i = 0; i < kMr; ++i) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(a[i]);
      c0[i] = _mm512_dpbf16_ps(c0[i], ai, b0);
      c1[i] = _mm512_dpbf16_ps(c1[i], ai, b1);
    }
  }
  finish<kMr>(t, c0, c1);
}

// Round to nearest even, NaN kept quiet: the same rounding as the scalar
// conversion (vcvtne2ps2bf16 would flush subnormals).
inline __m512i round_pairs(__m512 lo, __m512 hi) {
  const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  __m512i u[2] = {_mm512_castps_si512(lo), _mm512_castps_si512(hi)};
  for (int j = 0; j < 2; ++j) {
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u[j], abs_mask), inf);
    __m512i r = _mm512_add_epi32(u[j], _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(u[j], 16), one)));
    r = _mm512_mask_or_epi32(r, nan, u[j], _mm512_set1_epi32(0x400000));
    u[j] = _mm512_srli_epi32(r, 16);
  }
  return _mm512_or_si512(u[0], _mm512_slli_epi32(u[1], 16));  // even k in the low half
}

// Whether a lane of either vector is subnormal: vcvtne2ps2bf16 treats those
// as zero, where round_pairs (and every other backend) rounds them.
inline bool has_subnormal(__m512 a, __m512 b) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), one = _mm512_set1_epi32(1);
  const __m512i top = _mm512_set1_epi32(0x007ffffe);  // |x| - 1 <= this: 0 < |x| < 2^-126
  const __m512i ua = _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(a), abs_mask), one);
  const __m512i ub = _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(b), abs_mask), one);
  return (_mm512_cmple_epu32_mask(ua, top) | _mm512_cmple_epu32_mask(ub, top)) != 0;
}

inline float at(const float* row, int64_t ks, const int64_t* koff, int64_t k, int64_t klimit) {
  if (!row || k >= klimit) return 0.0f;
  return koff ? row[koff[k]] : row[k * ks];
}

inline uint32_t round_bf16(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x0040u;
  u += 0x7fffu + ((u >> 16) & 1u);
  return u >> 16;
}

// A panel of bf16 pairs [kc/2][14][2]: row i's pair p is one 32-bit word.
// Whole rows with unit k stride go 32 k at a time: each row's 16 pairs are
// rounded in one vector, then the 14 x 16 words are transposed like f32.
void pack_a_bf16(const float* const* rows, int64_t ks, const int64_t* koff, int64_t k0, int64_t kc, int64_t klimit,
                 void* dst) {
  uint32_t* d = static_cast<uint32_t*>(dst);
  bool fast = (ks == 1 || koff) && k0 + kc <= klimit;
  for (int i = 0; i < kMr && fast; ++i) fast = rows[i] != nullptr;
  int64_t k = 0;
  if (fast) {
    const __m512i even_idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd_idx = _mm512_add_epi32(even_idx, _mm512_set1_epi32(1));
    for (; k + 32 <= kc; k += 32) {
      const int64_t start = koff ? contiguous_run(koff, k0 + k, 32) : k0 + k;
      if (start < 0) {
        for (int64_t kk = k; kk < k + 32; kk += 2)
          for (int i = 0; i < kMr; ++i)
            d[kk / 2 * kMr + i] = round_bf16(rows[i][koff[k0 + kk]]) | round_bf16(rows[i][koff[k0 + kk + 1]]) << 16;
        continue;
      }
      __m512 v[16];
      for (int i = 0; i < kMr; ++i) {
        const __m512 lo = _mm512_loadu_ps(rows[i] + start), hi = _mm512_loadu_ps(rows[i] + start + 16);
        // 32 consecutive k as bf16 are 16 pair words in order: one conversion
        // does it, unless a subnormal is present (it would flush those).
        if (!has_subnormal(lo, hi))
          v[i] = _mm512_castsi512_ps((__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        else
          v[i] = _mm512_castsi512_ps(
              round_pairs(_mm512_permutex2var_ps(lo, even_idx, hi), _mm512_permutex2var_ps(lo, odd_idx, hi)));
      }
      store_transposed<kMr>(v, reinterpret_cast<float*>(d + k / 2 * kMr), k + 32 >= kc);
    }
  }
  for (; k < kc; k += 2)
    for (int i = 0; i < kMr; ++i)
      d[k / 2 * kMr + i] = round_bf16(at(rows[i], ks, koff, k0 + k, klimit)) |
                           round_bf16(at(rows[i], ks, koff, k0 + k + 1, klimit)) << 16;
}

// Column-major A (rows adjacent): per pair, rows k and k+1 are one masked
// load each, rounded and packed into 32-bit pair words in one go. The
// 16-word stores overlap the next pair's slot, which it rewrites; the last
// is masked.
void pack_a_cols_bf16(const float* a, int rows, int64_t ks, int64_t k0, int64_t kc, int64_t klimit, void* dst) {
  uint32_t* d = static_cast<uint32_t*>(dst);
  const __mmask16 m = static_cast<__mmask16>((1u << rows) - 1u);
  for (int64_t k = 0; k < kc; k += 2) {
    const __m512 e = k0 + k < klimit ? _mm512_maskz_loadu_ps(m, a + (k0 + k) * ks) : _mm512_setzero_ps();
    const __m512 o = k0 + k + 1 < klimit ? _mm512_maskz_loadu_ps(m, a + (k0 + k + 1) * ks) : _mm512_setzero_ps();
    const __m512i w = round_pairs(e, o);
    if (k + 2 < kc)
      _mm512_storeu_si512(d + k / 2 * kMr, w);
    else
      _mm512_mask_storeu_epi32(d + k / 2 * kMr, static_cast<__mmask16>((1u << kMr) - 1u), w);
  }
}

// bf16 rows: 32 k of a row are one vector of 16 pair words already, so the
// panel is the f32 path's transpose with no conversion.
void pack_a_b16(const uint16_t* const* rows, int64_t k0, int64_t kc, int64_t klimit, void* dst) {
  uint32_t* d = static_cast<uint32_t*>(dst);
  bool fast = k0 + kc <= klimit;
  for (int i = 0; i < kMr && fast; ++i) fast = rows[i] != nullptr;
  int64_t k = 0;
  if (fast) {
    for (; k + 32 <= kc; k += 32) {
      __m512 v[16];
      for (int i = 0; i < kMr; ++i) v[i] = _mm512_castsi512_ps(_mm512_loadu_si512(rows[i] + k0 + k));
      store_transposed<kMr>(v, reinterpret_cast<float*>(d + k / 2 * kMr), k + 32 >= kc);
    }
  }
  for (; k < kc; k += 2)
    for (int i = 0; i < kMr; ++i) {
      const uint16_t* r = rows[i];
      const uint32_t lo = r && k0 + k < klimit ? r[k0 + k] : 0u, hi = r && k0 + k + 1 < klimit ? r[k0 + k + 1] : 0u;
      d[k / 2 * kMr + i] = lo | hi << 16;
    }
}

}  // namespace

const GemmVariant kGemmAvx512Bf16Variant = {kMr, kNr, 2, 2, 2, kernel_bf16, pack_a_bf16, pack_a_cols_bf16, pack_a_b16};

}  // namespace vl
