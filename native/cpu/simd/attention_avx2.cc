// AVX2 + FMA attention tiles: 16 queries (2 vectors) per tile, register
// tiles sized for 16 ymm registers. Compiled with -mavx2 -mfma -mf16c.
#include <immintrin.h>

#include "cpu/simd/attention_isa.h"
#include "cpu/simd/attention_prefetch.h"

namespace vl {
namespace {

struct Vec {
  using T = __m256;
  static constexpr int W = 8;
  static T zero() { return _mm256_setzero_ps(); }
  static T set1(float x) { return _mm256_set1_ps(x); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T x) { _mm256_storeu_ps(p, x); }
  static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static T max(T a, T b) { return _mm256_max_ps(a, b); }
  static T sub(T a, T b) { return _mm256_sub_ps(a, b); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  // As the AVX-512 version; 2^n is built in the exponent bits (n = -127 gives 0).
  static T exp2(T x) {
    x = _mm256_max_ps(_mm256_set1_ps(-127.0f), x);  // keeps NaN
    const T n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const T f = _mm256_sub_ps(x, n);
    T p = _mm256_set1_ps(1.32647320e-3f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.67151392e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.55073358e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.40222424e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.93147004e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  }
};

constexpr int kQV = 2;
constexpr int kBc = 64;
constexpr int s_rows(int qv) { return qv == 2 ? 6 : 12; }
constexpr int pv_rows(int qv) { return qv == 2 ? 6 : 12; }

void rotate_row(const float* x, const float* c, const float* s, float scale, float* out, int64_t D) {
  const __m256 sc = _mm256_set1_ps(scale);
  int64_t d = 0;
  for (; d + 8 <= D; d += 8) {
    __m256 a = _mm256_loadu_ps(x + d);
    if (c) a = _mm256_fmadd_ps(a, _mm256_loadu_ps(c + d), _mm256_mul_ps(_mm256_permute_ps(a, 0xb1), _mm256_loadu_ps(s + d)));
    _mm256_storeu_ps(out + d, _mm256_mul_ps(a, sc));
  }
  for (; d < D; ++d) out[d] = (c ? x[d] * c[d] + x[d ^ 1] * s[d] : x[d]) * scale;
}

constexpr int kTB = 16;
void transpose(const float* src, int64_t ss, int64_t nr, int64_t nc, float* dst, int64_t ds, int64_t lanes) {
  for (int64_t c = 0; c < nc; ++c)
    for (int64_t r = 0; r < lanes; ++r) dst[c * ds + r] = r < nr ? src[r * ss + c] : 0.0f;
}

#include "cpu/simd/attention_tile.inc"
#include "cpu/simd/attention_backward_tile.inc"

}  // namespace

const AttentionIsa kAvx2Attention = {"avx2", kBr, scratch_floats, tile, pack_rows,
                                         bwd_scratch_floats, bwd_tile, rotate_rows};

}  // namespace vl
