// Portable attention tiles (no SIMD flags): the same algorithm with one-lane
// "vectors", 8 queries per tile. The reference the SIMD versions must match.
#include "cpu/simd/attention_isa.h"
#include "cpu/simd/attention_prefetch.h"

namespace vl {
namespace {

struct Vec {
  using T = float;
  static constexpr int W = 1;
  static T zero() { return 0.0f; }
  static T set1(float x) { return x; }
  static T load(const float* p) { return *p; }
  static void store(float* p, T x) { *p = x; }
  static T fma(T a, T b, T c) { return a * b + c; }
  static T max(T a, T b) { return a > b ? a : b; }
  static T sub(T a, T b) { return a - b; }
  static T add(T a, T b) { return a + b; }
  static T mul(T a, T b) { return a * b; }
  static T exp2(T x) { return __builtin_exp2f(x); }
};

constexpr int kQV = 8;
constexpr int kBc = 32;
constexpr int s_rows(int) { return 4; }
constexpr int pv_rows(int) { return 4; }

void rotate_row(const float* x, const float* c, const float* s, float scale, float* out, int64_t D) {
  for (int64_t d = 0; d < D; ++d) out[d] = (c ? x[d] * c[d] + x[d ^ 1] * s[d] : x[d]) * scale;
}

constexpr int kTB = 16;
void transpose(const float* src, int64_t ss, int64_t nr, int64_t nc, float* dst, int64_t ds, int64_t lanes) {
  for (int64_t c = 0; c < nc; ++c)
    for (int64_t r = 0; r < lanes; ++r) dst[c * ds + r] = r < nr ? src[r * ss + c] : 0.0f;
}

#include "cpu/simd/attention_tile.inc"
#include "cpu/simd/attention_backward_tile.inc"

}  // namespace

const AttentionIsa kScalarAttention = {"scalar", kBr, scratch_floats, tile, pack_rows,
                                         bwd_scratch_floats, bwd_tile, rotate_rows};

}  // namespace vl
