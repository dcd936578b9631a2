// Portable GEMM micro-kernels (tile 4x8), same packing interface as the SIMD ones.
#include <math.h>
#include <string.h>

#include "cpu/simd/gemm_isa.h"

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

inline float widen(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

void kernel_bf16(const GemmTile* t) {
  float acc[kMr][kNr];
  start(t, acc);
  const float* a = static_cast<const float*>(t->a);  // [kc][mr][2] f32
  const uint16_t* b = static_cast<const uint16_t*>(t->b);  // [kc][nr][2] bf16
  for (int64_t k = 0; k < t->kc; ++k, a += 2 * kMr, b += 2 * kNr)
    for (int i = 0; i < kMr; ++i)
      for (int j = 0; j < kNr; ++j) acc[i][j] += a[2 * i] * widen(b[2 * j]) + a[2 * i + 1] * widen(b[2 * j + 1]);
  finish(t, acc);
}

inline float at(const float* row, int64_t ks, const int64_t* koff, int64_t k, int64_t klimit) {
  if (!row || k >= klimit) return 0.0f;
  return koff ? row[koff[k]] : row[k * ks];
}

inline uint16_t round_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
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

void pack_a_f32(const float* const* rows, int64_t ks, const int64_t* koff, int64_t k0, int64_t kc, int64_t klimit,
                void* dst) {
  float* d = static_cast<float*>(dst);
  for (int64_t k = 0; k < kc; ++k)
    for (int i = 0; i < kMr; ++i) d[k * kMr + i] = at(rows[i], ks, koff, k0 + k, klimit);
}

void pack_a_pairs_f32(const float* const* rows, int64_t ks, const int64_t* koff, int64_t k0, int64_t kc,
                      int64_t klimit, void* dst) {
  float* d = static_cast<float*>(dst);
  for (int64_t k = 0; k < kc; k += 2)
    for (int i = 0; i < kMr; ++i) {
      d[(k / 2 * kMr + i) * 2] = bf16_round_f32(at(rows[i], ks, koff, k0 + k, klimit));
      d[(k / 2 * kMr + i) * 2 + 1] = bf16_round_f32(at(rows[i], ks, koff, k0 + k + 1, klimit));
    }
}

void pack_b_f32(const float* const* cols, int64_t ks, int64_t k, int64_t kpad, void* dst) {
  float* d = static_cast<float*>(dst);
  for (int64_t kk = 0; kk < kpad; ++kk)
    for (int j = 0; j < kNr; ++j) d[kk * kNr + j] = cols[j] && kk < k ? cols[j][kk * ks] : 0.0f;
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

const GemmKernels kGemmScalar = {
    "scalar",
    0,
    {kMr, kNr, 1, 4, 4, kernel_f32, pack_a_f32},
    {kMr, kNr, 2, 4, 2, kernel_bf16, pack_a_pairs_f32},
    pack_b_f32,
    pack_b_bf16,
};

}  // namespace vl
