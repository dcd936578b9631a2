// Portable versions of the per-ISA kernels; also the fallback on any x86-64.
#include <cmath>

#include "core/half.h"
#include "cpu/simd/isa.h"
#include "cpu/simd/kernels_common.h"

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
template <int op, bool s_first>
void binary_scalar_t(const float* v, float s, float* o, int64_t n) {
  for (int64_t i = 0; i < n; ++i) o[i] = s_first ? binary_element<op>(s, v[i]) : binary_element<op>(v[i], s);
}
void binary_scalar(int op, const float* v, float s, float* o, int64_t n, int s_first) {
  with_binary_scalar(op, s_first, [&](auto op_c, auto first_c) {
    binary_scalar_t<decltype(op_c)::value, decltype(first_c)::value>(v, s, o, n);
  });
}

void col_sum(const float* const* rows, int64_t nrows, int64_t w, float* acc) {
  for (int64_t r = 0; r < nrows; ++r) {
    const float* p = rows[r];
    for (int64_t c = 0; c < w; ++c) acc[c] += p[c];
  }
}

void transpose32(const uint32_t* src, int64_t lds, uint32_t* dst, int64_t ldd, int64_t m, int64_t n) {
  transpose32_edges(src, lds, dst, ldd, m, n, 0, 0);
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

float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  for (; i < n; ++i) acc[0] += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

void silu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float s = 1.0f / (1.0f + std::exp(-x[i]));
    dx[i] = dy[i] * (s * (1.0f + x[i] * (1.0f - s)));
  }
}

void swiglu_gate(const float* a1, const float* a2, float* h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] = a1[i] / (1.0f + std::exp(-a1[i])) * a2[i];
}

void swiglu_gate_backward(const float* dh, const float* a1, const float* a2, float* da1, float* da2, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float e = 1.0f + std::exp(-a1[i]);
    const float s = 1.0f / e;
    da1[i] = dh[i] * a2[i] * (s * (1.0f + a1[i] * (1.0f - s)));
    da2[i] = dh[i] * (a1[i] / e);
  }
}

void layer_norm_backward_row(const float* dy, const float* x, const float* w, float mean, float rstd, float* dx,
                             float* dw, float* db, int64_t n) {
  float sg[8] = {0, 0, 0, 0, 0, 0, 0, 0}, sgx[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) {
      const float xh = (x[i + k] - mean) * rstd, g = w ? dy[i + k] * w[i + k] : dy[i + k];
      sg[k] += g;
      sgx[k] += g * xh;
    }
  for (; i < n; ++i) {
    const float xh = (x[i] - mean) * rstd, g = w ? dy[i] * w[i] : dy[i];
    sg[0] += g;
    sgx[0] += g * xh;
  }
  const float inv_n = 1.0f / static_cast<float>(n);
  const float a = (((sg[0] + sg[1]) + (sg[2] + sg[3])) + ((sg[4] + sg[5]) + (sg[6] + sg[7]))) * inv_n;
  const float b = (((sgx[0] + sgx[1]) + (sgx[2] + sgx[3])) + ((sgx[4] + sgx[5]) + (sgx[6] + sgx[7]))) * inv_n;
  for (int64_t j = 0; j < n; ++j) {
    const float xh = (x[j] - mean) * rstd, g = w ? dy[j] * w[j] : dy[j];
    dx[j] = (g - a - xh * b) * rstd;
    if (dw) {
      dw[j] += dy[j] * xh;
      db[j] += dy[j];
    }
  }
}

}  // namespace

const IsaKernels kScalarKernels = {"scalar", f32_to_bf16, bf16_to_f32, f32_to_f16, f16_to_f32, add, sub, mul, div,
                                   binary_scalar, transpose32, sum, col_sum, layer_norm_row, softmax_row, silu, exp_,
                                   dot, silu_backward, swiglu_gate, swiglu_gate_backward, layer_norm_backward_row};

}  // namespace vl
