// Plain-C packing routines of the GEMM, shared by the scalar and AVX2 kernel
// files (parameterized by their tile sizes). Internal linkage only: included
// by translation units built with different ISA flags (see isa.h).
#pragma once
#include <cstdint>

#include "core/half.h"

namespace vl {
namespace {

inline float at(const float* row, int64_t ks, const int64_t* koff, int64_t k, int64_t klimit) {
  if (!row || k >= klimit) return 0.0f;
  return koff ? row[koff[k]] : row[k * ks];
}

// The activation as the bf16 kernels see it: rounded to bf16, kept as f32
// for kernels that multiply in f32 (same products as vdpbf16ps).
inline float bf16_round_f32(float f) { return bf16_to_f32(f32_to_bf16(f)); }

template <int MR>
void pack_a_f32(const float* const* rows, int64_t ks, const int64_t* koff, int64_t k0, int64_t kc, int64_t klimit,
                void* dst) {
  float* d = static_cast<float*>(dst);
  for (int64_t k = 0; k < kc; ++k)
    for (int i = 0; i < MR; ++i) d[k * MR + i] = at(rows[i], ks, koff, k0 + k, klimit);
}

template <int MR>
void pack_a_pairs_f32(const float* const* rows, int64_t ks, const int64_t* koff, int64_t k0, int64_t kc,
                      int64_t klimit, void* dst) {
  float* d = static_cast<float*>(dst);
  for (int64_t k = 0; k < kc; k += 2)
    for (int i = 0; i < MR; ++i) {
      d[(k / 2 * MR + i) * 2] = bf16_round_f32(at(rows[i], ks, koff, k0 + k, klimit));
      d[(k / 2 * MR + i) * 2 + 1] = bf16_round_f32(at(rows[i], ks, koff, k0 + k + 1, klimit));
    }
}

template <int MR>
void pack_a_cols_f32(const float* a, int rows, int64_t ks, int64_t k0, int64_t kc, int64_t klimit, void* dst) {
  float* d = static_cast<float*>(dst);
  for (int64_t k = 0; k < kc; ++k) {
    float* o = d + k * MR;
    const int n = k0 + k < klimit ? rows : 0;
    const float* src = a + (k0 + k) * ks;
    for (int i = 0; i < n; ++i) o[i] = src[i];
    for (int i = n; i < MR; ++i) o[i] = 0.0f;
  }
}

template <int MR>
void pack_a_cols_pairs_f32(const float* a, int rows, int64_t ks, int64_t k0, int64_t kc, int64_t klimit, void* dst) {
  float* d = static_cast<float*>(dst);
  for (int64_t k = 0; k < kc; k += 2)
    for (int h = 0; h < 2; ++h) {
      float* o = d + k / 2 * MR * 2 + h;
      const int n = k0 + k + h < klimit ? rows : 0;
      const float* src = a + (k0 + k + h) * ks;
      for (int i = 0; i < n; ++i) o[2 * i] = bf16_round_f32(src[i]);
      for (int i = n; i < MR; ++i) o[2 * i] = 0.0f;
    }
}

template <int NR>
void pack_b_f32(const float* const* cols, int64_t ks, int64_t k, int64_t kpad, void* dst) {
  float* d = static_cast<float*>(dst);
  for (int64_t kk = 0; kk < kpad; ++kk)
    for (int j = 0; j < NR; ++j) d[kk * NR + j] = cols[j] && kk < k ? cols[j][kk * ks] : 0.0f;
}

template <int NR>
void pack_b_bf16(const float* const* cols, int64_t ks, int64_t k, int64_t kpad, void* dst) {
  uint16_t* d = static_cast<uint16_t*>(dst);
  for (int64_t kk = 0; kk < kpad; kk += 2)
    for (int j = 0; j < NR; ++j) {
      const float* c = cols[j];
      d[(kk / 2 * NR + j) * 2] = f32_to_bf16(c && kk < k ? c[kk * ks] : 0.0f);
      d[(kk / 2 * NR + j) * 2 + 1] = f32_to_bf16(c && kk + 1 < k ? c[(kk + 1) * ks] : 0.0f);
    }
}

}  // namespace
}  // namespace vl
