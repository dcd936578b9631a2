// AVX-512 attention tiles: 64 queries (4 vectors) per tile. Compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma; called only when the CPU has them.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu/simd/attention_isa.h"

namespace vl {
namespace {

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

constexpr int kQV = 4;
constexpr int kBc = 64;
// Register tiles of 24 accumulators (16 with one query vector) out of 32 registers.
constexpr int s_rows(int qv) { return qv == 4 ? 6 : qv == 3 ? 8 : qv == 2 ? 12 : 16; }
constexpr int pv_rows(int qv) { return qv == 4 ? 6 : qv == 3 ? 8 : qv == 2 ? 12 : 16; }

// out = rot(x)·scale: (a, b) -> (a·cos − b·sin, a·sin + b·cos) per channel pair.
void rotate_row(const float* x, const float* c, const float* s, float scale, float* out, int64_t D) {
  const __m512 sc = _mm512_set1_ps(scale);
  for (int64_t d = 0; d < D; d += 16) {
    const __mmask16 m = D - d >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (D - d)) - 1u);
    __m512 a = _mm512_maskz_loadu_ps(m, x + d);
    if (c) {
      const __m512 swapped = _mm512_permute_ps(a, 0xb1);
      a = _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(m, c + d), _mm512_mul_ps(swapped, _mm512_maskz_loadu_ps(m, s + d)));
    }
    _mm512_mask_storeu_ps(out + d, m, _mm512_mul_ps(a, sc));
  }
}

#include "cpu/simd/attention_tile.inc"

}  // namespace

const AttentionIsa kAvx512Attention = {"avx512", kBr, scratch_floats, tile, pack_rows};

}  // namespace vl
