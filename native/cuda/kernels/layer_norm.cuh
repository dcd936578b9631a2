// LayerNorm over the last dimension (as cpu/norm.cc): forward with the fused
// residual add of pre-norm blocks, and backward. One block per row for the
// row-wise parts; the weight and bias gradients are column sums over rows
// in a fixed order (deterministic). Kernel source shared by nvcc and the SIMT
// runner (cuda/simt.cuh).
#pragma once
#include <cmath>
#include <cstdint>

#include "cuda/kernels/block_reduce.cuh"

namespace vl {
namespace cuda {
namespace kernels {

// s = x (+ residual, written to sum when given); y = (s - mean) * rstd * w + b,
// with w and b optional, and the row's mean and rstd saved when asked (backward
// needs them). Variance in two passes over the row, as the CPU does.
// grid.x = rows, blockDim.x = kThreads.
template <int kThreads>
VL_GLOBAL void layer_norm_rows(const float* VL_RESTRICT x, const float* VL_RESTRICT residual, float* VL_RESTRICT sum,
                               const float* VL_RESTRICT w, const float* VL_RESTRICT b, float* VL_RESTRICT y,
                               float* VL_RESTRICT mean_out, float* VL_RESTRICT rstd_out, int C, float eps) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "a whole number of warps");
  VL_SHARED float partial[kThreads / 32];
  const int64_t row = simt::block_x();
  const float* xr = x + row * C;
  const float* rr = residual ? residual + row * C : nullptr;
  float* sr = sum ? sum + row * C : nullptr;
  float* yr = y + row * C;
  const int t = simt::thread_x();
  float acc = 0.0f;
  for (int c = t; c < C; c += kThreads) {
    const float v = rr ? xr[c] + rr[c] : xr[c];
    if (sr) sr[c] = v;
    acc += v;
  }
  const float mean = block_reduce<SumOp>(acc, partial) / static_cast<float>(C);
  // With a residual the sum row is read back by the threads that wrote it.
  const float* src = sr ? sr : xr;
  float sq = 0.0f;
  for (int c = t; c < C; c += kThreads) {
    const float d = src[c] - mean;
    sq += d * d;
  }
  const float rstd = 1.0f / sqrtf(block_reduce<SumOp>(sq, partial) / static_cast<float>(C) + eps);
  for (int c = t; c < C; c += kThreads) {
    float v = (src[c] - mean) * rstd;
    if (w) v *= w[c];
    if (b) v += b[c];
    yr[c] = v;
  }
  if (t == 0) {
    if (mean_out) mean_out[row] = mean;
    if (rstd_out) rstd_out[row] = rstd;
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w (or dy),
// xhat = (x - mean) * rstd. grid.x = rows, blockDim.x = kThreads.
template <int kThreads>
VL_GLOBAL void layer_norm_backward_rows(const float* VL_RESTRICT dy, const float* VL_RESTRICT x,
                                        const float* VL_RESTRICT mean, const float* VL_RESTRICT rstd,
                                        const float* VL_RESTRICT w, float* VL_RESTRICT dx, int C) {
  VL_SHARED float partial[kThreads / 32];
  const int64_t row = simt::block_x();
  const float* dyr = dy + row * C;
  const float* xr = x + row * C;
  float* dxr = dx + row * C;
  const float mu = mean[row], rs = rstd[row];
  const int t = simt::thread_x();
  float sg = 0.0f, sgx = 0.0f;
  for (int c = t; c < C; c += kThreads) {
    const float g = w ? dyr[c] * w[c] : dyr[c];
    sg += g;
    sgx += g * (xr[c] - mu) * rs;
  }
  const float mg = block_reduce<SumOp>(sg, partial) / static_cast<float>(C);
  const float mgx = block_reduce<SumOp>(sgx, partial) / static_cast<float>(C);
  for (int c = t; c < C; c += kThreads) {
    const float g = w ? dyr[c] * w[c] : dyr[c];
    dxr[c] = rs * (g - mg - (xr[c] - mu) * rs * mgx);
  }
}

// dweight[j] = sum_r dy[r, j] * xhat[r, j], dbias[j] = sum_r dy[r, j]: one
// thread per column, rows in order. grid.x * blockDim.x >= C.
VL_GLOBAL void layer_norm_param_grads(const float* VL_RESTRICT dy, const float* VL_RESTRICT x,
                                      const float* VL_RESTRICT mean, const float* VL_RESTRICT rstd,
                                      float* VL_RESTRICT dweight, float* VL_RESTRICT dbias, int64_t rows, int C) {
  const int j = simt::block_x() * simt::block_dim_x() + simt::thread_x();
  if (j >= C) return;
  float sw = 0.0f, sb = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const float d = dy[r * C + j];
    sw += d * (x[r * C + j] - mean[r]) * rstd[r];
    sb += d;
  }
  dweight[j] = sw;
  dbias[j] = sb;
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
