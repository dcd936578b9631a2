// Portable versions of the per-ISA kernels; also the fallback on any x86-64.
#include <cmath>

#include "core/half.h"
#include "cpu/simd/isa.h"

namespace vl {
namespace {

void f32_to_bf16(const float* s, uint16_t* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = vl::f32_to_bf16(s[i]);
}
void bf16_to_f32(const uint16_t* s, float* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = vl::bf16_to_f32(s[i]);
}
void f32_to_f16(const float* s, uint16_t* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = vl::f32_to_f16(s[i]);
}
void f16_to_f32(const uint16_t* s, float* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = vl::f16_to_f32(s[i]);
}
void add(const float* a, const float* b, float* o, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = a[i] + b[i];
}
void sub(const float* a, const float* b, float* o, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = a[i] - b[i];
}
void mul(const float* a, const float* b, float* o, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = a[i] * b[i];
}
void div(const float* a, const float* b, float* o, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = a[i] / b[i];
}
float sum(const float* x, int64_t n) {
  // Eight partial sums: shorter dependency chains and better rounding than one.
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += x[i + k];
  for (; i < n; ++i) acc[0] += x[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

void layer_norm_row(const float* x, const float* w, const float* b, float* y, int64_t n, float eps, float* mean_out,
                    float* rstd_out) {
  const float mean = sum(x, n) / static_cast<float>(n);
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += (x[i + k] - mean) * (x[i + k] - mean);
  for (; i < n; ++i) acc[0] += (x[i] - mean) * (x[i] - mean);
  const float var = (((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))) / static_cast<float>(n);
  const float rstd = 1.0f / std::sqrt(var + eps);
  for (int64_t j = 0; j < n; ++j) {
    float v = (x[j] - mean) * rstd;
    if (w) v *= w[j];
    if (b) v += b[j];
    y[j] = v;
  }
  if (mean_out) *mean_out = mean;
  if (rstd_out) *rstd_out = rstd;
}

void exp_(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}

void softmax_row(const float* x, float* y, int64_t n, float* lse) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] - m;
  exp_(y, y, n);
  const float s = sum(y, n);
  const float inv = 1.0f / s;
  for (int64_t i = 0; i < n; ++i) y[i] *= inv;
  if (lse) *lse = m + std::log(s);
}

void silu(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] / (1.0f + std::exp(-x[i]));
}

}  // namespace

const IsaKernels kScalarKernels = {"scalar", f32_to_bf16, bf16_to_f32, f32_to_f16, f16_to_f32, add, sub, mul, div, sum,
                                   layer_norm_row, softmax_row, silu, exp_};

}  // namespace vl
