// AVX-512 GEMM micro-kernels (F, BW, VL, DQ + FMA). The f32 tile is 14x32:
// 28 zmm accumulators, two B vectors per k step and one broadcast A value
// per row feeding two FMAs, so 31 of the 32 registers do the work and each
// k step is 28 FMAs for 2 loads + 14 broadcasts (FMA-bound on 2 FMA pipes).
// The bf16 variant here is the fallback for CPUs without AVX512_BF16: it
// widens the packed bf16 pairs of B to f32 in registers (12x32 tile).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu/simd/gemm_avx512_tile.h"
#include "cpu/simd/gemm_isa.h"

namespace vl {
namespace {

constexpr int kMr = 14;
constexpr int kNr = 32;
constexpr int kMrBf = 12;

void kernel_f32(const GemmTile* t) {
  __m512 c0[kMr], c1[kMr];
  start<kMr>(t, c0, c1);
  const float* a = static_cast<const float*>(t->a);
  const float* b = static_cast<const float*>(t->b);
  // Two k steps per iteration: the loop overhead is a few % at this size.
  int64_t k = t->kc;
  for (; k >= 2; k -= 2) {
#pragma GCC unroll 2
    for (int u = 0; u < 2; ++u) {
      const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
      for (int i = 0; i < kMr; ++i) {
        const __m512 ai = _mm512_set1_ps(a[i]);
        c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
        c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
      }
      a += kMr;
      b += kNr;
    }
  }
  if (k) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
    for (int i = 0; i < kMr; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
    }
  }
  finish<kMr>(t, c0, c1);
}

// bf16 B pairs widened in registers; A is an f32 panel [kc/2][mr][2].
void kernel_bf16_widen(const GemmTile* t) {
  __m512 c0[kMrBf], c1[kMrBf];
  start<kMrBf>(t, c0, c1);
  const float* a = static_cast<const float*>(t->a);
  const __m512i* b = static_cast<const __m512i*>(t->b);
  const __m512i hi = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t k = t->kc; k > 0; --k) {
    const __m512i p0 = _mm512_load_si512(b), p1 = _mm512_load_si512(b + 1);
    const __m512 e0 = _mm512_castsi512_ps(_mm512_slli_epi32(p0, 16));
    const __m512 o0 = _mm512_castsi512_ps(_mm512_and_si512(p0, hi));
    const __m512 e1 = _mm512_castsi512_ps(_mm512_slli_epi32(p1, 16));
    const __m512 o1 = _mm512_castsi512_ps(_mm512_and_si512(p1, hi));
#pragma GCC unroll 12
    for (int i = 0; i < kMrBf; ++i) {
      const __m512 ae = _mm512_set1_ps(a[2 * i]), ao = _mm512_set1_ps(a[2 * i + 1]);
      c0[i] = _mm512_fmadd_ps(ae, e0, c0[i]);
      c1[i] = _mm512_fmadd_ps(ae, e1, c1[i]);
      c0[i] = _mm512_fmadd_ps(ao, o0, c0[i]);
      c1[i] = _mm512_fmadd_ps(ao, o1, c1[i]);
    }
    a += 2 * kMrBf;
    b += 2;
  }
  finish<kMrBf>(t, c0, c1);
}

// Reads element k of a row (zero past klimit or for a missing row).
inline float at(const float* row, int64_t ks, const int64_t* koff, int64_t k, int64_t klimit) {
  if (!row || k >= klimit) return 0.0f;
  return koff ? row[koff[k]] : row[k * ks];
}

inline uint16_t round_bf16(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// The activation as the bf16 kernels see it: rounded to bf16, kept as f32
// for kernels that multiply in f32 (same products as vdpbf16ps).
inline float bf16_round_f32(float f) {
  const uint32_t u = static_cast<uint32_t>(round_bf16(f)) << 16;
  float r;
  __builtin_memcpy(&r, &u, 4);
  return r;
}

// A panels. The common case (unit k stride, whole rows) transposes 16x16
// blocks in registers; everything else goes through at().
template <int MR>
void pack_a_f32_t(const float* const* rows, int64_t ks, const int64_t* koff, int64_t k0, int64_t kc, int64_t klimit,
                  void* dst) {
  float* d = static_cast<float*>(dst);
  bool fast = (ks == 1 || koff) && k0 + kc <= klimit;
  for (int i = 0; i < MR && fast; ++i) fast = rows[i] != nullptr;
  int64_t k = 0;
  if (fast) {
    for (; k + 16 <= kc; k += 16) {
      const int64_t start = koff ? contiguous_run(koff, k0 + k, 16) : k0 + k;
      if (start < 0) {
        for (int64_t kk = k; kk < k + 16; ++kk)
          for (int i = 0; i < MR; ++i) d[kk * MR + i] = rows[i][koff[k0 + kk]];
        continue;
      }
      __m512 v[16];
      for (int i = 0; i < MR; ++i) v[i] = _mm512_loadu_ps(rows[i] + start);
      store_transposed<MR>(v, d + k * MR, k + 16 >= kc);
    }
  }
  for (; k < kc; ++k)
    for (int i = 0; i < MR; ++i) d[k * MR + i] = at(rows[i], ks, koff, k0 + k, klimit);
}

// f32 panel in pair order [kc/2][mr][2] for the widening bf16 kernel.
void pack_a_pairs_f32(const float* const* rows, int64_t ks, const int64_t* koff, int64_t k0, int64_t kc,
                      int64_t klimit, void* dst) {
  float* d = static_cast<float*>(dst);
  for (int64_t k = 0; k < kc; k += 2)
    for (int i = 0; i < kMrBf; ++i) {
      d[(k / 2 * kMrBf + i) * 2] = bf16_round_f32(at(rows[i], ks, koff, k0 + k, klimit));
      d[(k / 2 * kMrBf + i) * 2 + 1] = bf16_round_f32(at(rows[i], ks, koff, k0 + k + 1, klimit));
    }
}

inline __mmask16 first_lanes(int n) { return static_cast<__mmask16>((1u << n) - 1u); }

// Column-major A (rows adjacent): one masked load of the panel's rows per k;
// the 16-lane stores overlap the next step's slot, which that step rewrites
// (only the last is masked: past the panel lies another panel's memory).
template <int MR>
void pack_a_cols_f32(const float* a, int rows, int64_t ks, int64_t k0, int64_t kc, int64_t klimit, void* dst) {
  float* d = static_cast<float*>(dst);
  const __mmask16 m = first_lanes(rows);
  const int64_t kin = klimit - k0 < kc ? (klimit - k0 > 0 ? klimit - k0 : 0) : kc;
  const float* src = a + k0 * ks;
  int64_t k = 0;
  for (; k + 4 <= kin && k + 4 < kc; k += 4) {
    const __m512 v0 = _mm512_maskz_loadu_ps(m, src + k * ks), v1 = _mm512_maskz_loadu_ps(m, src + (k + 1) * ks);
    const __m512 v2 = _mm512_maskz_loadu_ps(m, src + (k + 2) * ks), v3 = _mm512_maskz_loadu_ps(m, src + (k + 3) * ks);
    _mm512_storeu_ps(d + k * MR, v0);
    _mm512_storeu_ps(d + (k + 1) * MR, v1);
    _mm512_storeu_ps(d + (k + 2) * MR, v2);
    _mm512_storeu_ps(d + (k + 3) * MR, v3);
  }
  for (; k < kc; ++k) {
    const __m512 v = k < kin ? _mm512_maskz_loadu_ps(m, src + k * ks) : _mm512_setzero_ps();
    if (k + 1 < kc)
      _mm512_storeu_ps(d + k * MR, v);
    else
      _mm512_mask_storeu_ps(d + k * MR, first_lanes(MR), v);
  }
}

// Rounds to bf16 (nearest even, NaN kept quiet) and back to f32, as round_bf16.
inline __m512 bf16_round512(__m512 x) {
  return _mm512_castsi512_ps(_mm512_and_si512(bf16_round_bits512(x), _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}

// Column-major A for the widening bf16 kernel: panel [kc/2][mr][2] of
// bf16-rounded f32, rows k and k+1 interleaved per pair.
void pack_a_cols_pairs_f32(const float* a, int rows, int64_t ks, int64_t k0, int64_t kc, int64_t klimit, void* dst) {
  static_assert(kMrBf <= 16 && kMrBf > 8, "two stores per pair");
  float* d = static_cast<float*>(dst);
  const __mmask16 m = first_lanes(rows);
  const __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi_idx = _mm512_add_epi32(lo_idx, _mm512_set1_epi32(8));
  for (int64_t k = 0; k < kc; k += 2) {
    const __m512 e = k0 + k < klimit ? _mm512_maskz_loadu_ps(m, a + (k0 + k) * ks) : _mm512_setzero_ps();
    const __m512 o = k0 + k + 1 < klimit ? _mm512_maskz_loadu_ps(m, a + (k0 + k + 1) * ks) : _mm512_setzero_ps();
    const __m512 re = bf16_round512(e), ro = bf16_round512(o);
    float* p = d + k / 2 * kMrBf * 2;
    _mm512_storeu_ps(p, _mm512_permutex2var_ps(re, lo_idx, ro));
    _mm512_mask_storeu_ps(p + 16, first_lanes(2 * kMrBf - 16), _mm512_permutex2var_ps(re, hi_idx, ro));
  }
}

void pack_b_f32(const float* const* cols, int64_t ks, int64_t k, int64_t kpad, void* dst) {
  float* d = static_cast<float*>(dst);
  bool unit = true;  // columns adjacent in memory: each k row is one vector copy
  for (int j = 0; j < kNr; ++j) unit = unit && cols[j] && cols[j] == cols[0] + j;
  if (unit) {
    for (int64_t kk = 0; kk < k; ++kk) {
      _mm512_store_ps(d + kk * kNr, _mm512_loadu_ps(cols[0] + kk * ks));
      _mm512_store_ps(d + kk * kNr + 16, _mm512_loadu_ps(cols[0] + kk * ks + 16));
    }
  } else {
    for (int64_t kk = 0; kk < k; ++kk)
      for (int j = 0; j < kNr; ++j) d[kk * kNr + j] = cols[j] ? cols[j][kk * ks] : 0.0f;
  }
  for (int64_t kk = k; kk < kpad; ++kk)
    for (int j = 0; j < kNr; ++j) d[kk * kNr + j] = 0.0f;
}

void pack_b_bf16(const float* const* cols, int64_t ks, int64_t k, int64_t kpad, void* dst) {
  uint16_t* d = static_cast<uint16_t*>(dst);
  for (int64_t kk = 0; kk < kpad; kk += 2)
    for (int j = 0; j < kNr; ++j) {
      const float* c = cols[j];
      d[(kk / 2 * kNr + j) * 2] = round_bf16(c && kk < k ? c[kk * ks] : 0.0f);
      d[(kk / 2 * kNr + j) * 2 + 1] = round_bf16(c && kk + 1 < k ? c[(kk + 1) * ks] : 0.0f);
    }
}

}  // namespace

const GemmKernels kGemmAvx512 = {
    "avx512",
    2,
    {kMr, kNr, 1, 4, 4, kernel_f32, pack_a_f32_t<kMr>, pack_a_cols_f32<kMr>, nullptr},
    {kMrBf, kNr, 2, 4, 2, kernel_bf16_widen, pack_a_pairs_f32, pack_a_cols_pairs_f32, nullptr},
    pack_b_f32,
    pack_b_bf16,
};

}  // namespace vl
