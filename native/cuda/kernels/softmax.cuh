// Row softmax: one block per row, the max and the sum reduced with warp
// shuffles and one shared-memory exchange between warps (block_reduce.cuh).
// Kernel source shared by nvcc and the SIMT runner (cuda/simt.cuh).
#pragma once
#include <cmath>

#include "cuda/kernels/block_reduce.cuh"

namespace vl {
namespace cuda {
namespace kernels {

// y[row, :] = softmax(x[row, :]) and, when lse is given, lse[row] = log sum
// exp x[row, :] (what backward and flash-style recomputation need);
// grid.x = rows, blockDim.x = kThreads.
template <int kThreads>
VL_GLOBAL void softmax_rows(const float* VL_RESTRICT x, float* VL_RESTRICT y, float* VL_RESTRICT lse, int cols) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "a whole number of warps");
  VL_SHARED float partial[kThreads / 32];
  const int64_t row = simt::block_x();
  const float* xr = x + row * cols;
  float* yr = y + row * cols;
  float m = -INFINITY;
  for (int c = simt::thread_x(); c < cols; c += kThreads) m = fmaxf(m, xr[c]);
  m = block_reduce<MaxOp>(m, partial);
  float s = 0.0f;
  for (int c = simt::thread_x(); c < cols; c += kThreads) s += expf(xr[c] - m);
  s = block_reduce<SumOp>(s, partial);
  if (lse && simt::thread_x() == 0) lse[row] = m + logf(s);
  const float inv = 1.0f / s;
  for (int c = simt::thread_x(); c < cols; c += kThreads) yr[c] = expf(xr[c] - m) * inv;
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
