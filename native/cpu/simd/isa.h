// Kernels compiled once per instruction set. Only plain C types cross this
// boundary: the per-ISA files must not share inline or template code with the
// rest of the addon (the linker could pick their AVX-512 copy for everyone).
#pragma once
#include <cstdint>

namespace vl {

enum : int { kBinaryAdd = 0, kBinarySub = 1, kBinaryMul = 2, kBinaryDiv = 3 };

struct IsaKernels {
  const char* name;
  void (*f32_to_bf16)(const float* src, uint16_t* dst, int64_t n);
  void (*bf16_to_f32)(const uint16_t* src, float* dst, int64_t n);
  void (*f32_to_f16)(const float* src, uint16_t* dst, int64_t n);
  void (*f16_to_f32)(const uint16_t* src, float* dst, int64_t n);
  void (*add_f32)(const float* a, const float* b, float* out, int64_t n);
  void (*sub_f32)(const float* a, const float* b, float* out, int64_t n);
  void (*mul_f32)(const float* a, const float* b, float* out, int64_t n);
  void (*div_f32)(const float* a, const float* b, float* out, int64_t n);
  // out = v op s, or s op v when s_first (op: kBinaryAdd..kBinaryDiv): one
  // operand broadcast, the same IEEE result per element as the two-vector ones.
  void (*binary_scalar_f32)(int op, const float* v, float s, float* out, int64_t n, int s_first);
  // Transpose of 4-byte elements: dst[i * ldd + j] = src[j * lds + i] for
  // i < m, j < n (a strided copy whose unit-stride dim is not the last).
  void (*transpose32)(const uint32_t* src, int64_t lds, uint32_t* dst, int64_t ldd, int64_t m, int64_t n);
  // Sum in a fixed order for a given ISA and n.
  float (*sum_f32)(const float* x, int64_t n);
  // Column sums: acc[c] += rows[0][c] + rows[1][c] + ..., added one row at a
  // time in row order (so every ISA gives the same bits), for c < w.
  void (*col_sum_f32)(const float* const* rows, int64_t nrows, int64_t w, float* acc);
  // LayerNorm of one row: y = (x - mean) * rstd * w + b (w/b may be null);
  // two passes over x for an accurate variance. Writes mean and rstd.
  void (*layer_norm_row)(const float* x, const float* w, const float* b, float* y, int64_t n, float eps,
                         float* mean, float* rstd);
  // Softmax of one row (max-subtracted); writes log-sum-exp when lse is not null.
  void (*softmax_row)(const float* x, float* y, int64_t n, float* lse);
  // y = x * sigmoid(x)
  void (*silu)(const float* x, float* y, int64_t n);
  // y = exp(x), relative error within a few ulp
  void (*exp)(const float* x, float* y, int64_t n);
  // Sum of a[i] * b[i] in a fixed order for a given ISA and n.
  float (*dot_f32)(const float* a, const float* b, int64_t n);
  // dx = dy * silu'(x), silu'(x) = s * (1 + x * (1 - s)) with s = sigmoid(x).
  void (*silu_backward)(const float* x, const float* dy, float* dx, int64_t n);
  // SwiGLU gate: h = silu(a1) * a2.
  void (*swiglu_gate)(const float* a1, const float* a2, float* h, int64_t n);
  // Its gradient: da1 = dh * a2 * silu'(a1), da2 = dh * silu(a1).
  void (*swiglu_gate_backward)(const float* dh, const float* a1, const float* a2, float* da1, float* da2, int64_t n);
  // LayerNorm backward of one row from the forward's mean and rstd, with
  // g = dy * w (dy when w is null) and xhat = (x - mean) * rstd:
  // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)). When dw is not null,
  // also accumulates dw += dy * xhat and db += dy (the caller's partial sums).
  void (*layer_norm_backward_row)(const float* dy, const float* x, const float* w, float mean, float rstd, float* dx,
                                  float* dw, float* db, int64_t n);
};

extern const IsaKernels kScalarKernels;
extern const IsaKernels kAvx2Kernels;
extern const IsaKernels kAvx512Kernels;

// The table for the active ISA (see core/cpu_features.h).
const IsaKernels& isa_kernels();

}  // namespace vl
