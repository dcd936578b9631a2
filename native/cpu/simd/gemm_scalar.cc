// Portable GEMM micro-kernels (tile 4x8), same packing interface as the SIMD ones.
#include <math.h>
#include <string.h>

#include "cpu/simd/gemm_isa.h"
#include "cpu/simd/gemm_pack_generic.h"

namespace vl {
namespace {

constexpr int kMr = 4;
constexpr int kNr = 8;

// acc[i][j] holds row i, accumulator column j; kgroup 2 reads B as bf16 pairs.
void finish(const GemmTile* t, float acc[kMr][kNr]) {
  for (int i = 0; i < t->m; ++i) {
    float* c = t->c + i * t->ldc;
    if (!t->final_store) {
      for (int j = 0; j < t->n; ++j) c[j] = acc[i][j];
      continue;
    }
    for (int j = 0; j < t->nout; ++j) {
      float v;
      if (t->act == kGemmActSwiglu) {
        const float g = acc[i][j], u = acc[i][j + kNr / 2];
        v = g / (1.0f + expf(-g)) * u;
      } else {
        v = acc[i][j] + (t->bias ? t->bias[j] : 0.0f);
      }
      if (t->res) v += t->res[i * t->ldres + j];
      c[j] = v;
    }
  }
}

void start(const GemmTile* t, float acc[kMr][kNr]) {
  for (int i = 0; i < kMr; ++i)
    for (int j = 0; j < kNr; ++j) acc[i][j] = t->acc && i < t->m && j < t->n ? t->acc[i * t->ldacc + j] : 0.0f;
}

void kernel_f32(const GemmTile* t) {
  float acc[kMr][kNr];
  start(t, acc);
  const float* a = static_cast<const float*>(t->a);
  const float* b = static_cast<const float*>(t->b);
  for (int64_t k = 0; k < t->kc; ++k, a += kMr, b += kNr)
    for (int i = 0; i < kMr; ++i)
      for (int j = 0; j < kNr; ++j) acc[i][j] += a[i] * b[j];
  finish(t, acc);
}

void kernel_bf16(const GemmTile* t) {
  float acc[kMr][kNr];
  start(t, acc);
  const float* a = static_cast<const float*>(t->a);  // [kc][mr][2] f32
  const uint16_t* b = static_cast<const uint16_t*>(t->b);  // [kc][nr][2] bf16
  for (int64_t k = 0; k < t->kc; ++k, a += 2 * kMr, b += 2 * kNr)
    for (int i = 0; i < kMr; ++i)
      for (int j = 0; j < kNr; ++j) acc[i][j] += a[2 * i] * bf16_to_f32(b[2 * j]) + a[2 * i + 1] * bf16_to_f32(b[2 * j + 1]);
  finish(t, acc);
}

}  // namespace

const GemmKernels kGemmScalar = {
    "scalar",
    0,
    {kMr, kNr, 1, 4, 4, kernel_f32, pack_a_f32<kMr>, pack_a_cols_f32<kMr>, nullptr},
    {kMr, kNr, 2, 4, 2, kernel_bf16, pack_a_pairs_f32<kMr>, pack_a_cols_pairs_f32<kMr>, nullptr},
    pack_b_f32<kNr>,
    pack_b_bf16<kNr>,
};

}  // namespace vl
