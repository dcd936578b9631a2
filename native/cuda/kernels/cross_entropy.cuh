// Cross-entropy with label smoothing (as cpu/loss.cc): per row
//   loss = lse - (1 - eps) z_y - (eps / K) sum_k z_k, lse = log sum exp z,
// and its gradient dz_k = dloss (softmax_k - (1 - eps) [k = y] - eps / K).
// A label outside [0, K) sets *bad (the launcher reports it) and its row is
// left unwritten. Kernel source shared by nvcc and the SIMT runner.
#pragma once
#include <cmath>
#include <cstdint>

#include "cuda/kernels/block_reduce.cuh"

namespace vl {
namespace cuda {
namespace kernels {

// grid.x = B rows, blockDim.x = kThreads; L is the label type (int32_t or int64_t).
template <int kThreads, typename L>
VL_GLOBAL void cross_entropy_rows(const float* VL_RESTRICT z, const L* VL_RESTRICT labels, float* VL_RESTRICT loss,
                                  float* VL_RESTRICT lse_out, int K, float eps, int* VL_RESTRICT bad) {
  VL_SHARED float partial[kThreads / 32];
  const int64_t row = simt::block_x();
  const int64_t y = static_cast<int64_t>(labels[row]);
  if (y < 0 || y >= K) {  // the same for every thread of the block: no barrier is split
    if (simt::thread_x() == 0) *bad = 1;
    return;
  }
  const float* zr = z + row * K;
  const int t = simt::thread_x();
  float m = -INFINITY;
  for (int k = t; k < K; k += kThreads) m = fmaxf(m, zr[k]);
  m = block_reduce<MaxOp>(m, partial);
  float s = 0.0f, sz = 0.0f;
  for (int k = t; k < K; k += kThreads) {
    s += expf(zr[k] - m);
    sz += zr[k];
  }
  s = block_reduce<SumOp>(s, partial);
  sz = eps > 0.0f ? block_reduce<SumOp>(sz, partial) : 0.0f;
  if (t == 0) {
    const float lse = m + logf(s);
    lse_out[row] = lse;
    loss[row] = lse - (1.0f - eps) * zr[y] - eps / static_cast<float>(K) * sz;
  }
}

// Grid-stride over the B x K gradient.
template <typename L>
VL_GLOBAL void cross_entropy_backward_elems(const float* VL_RESTRICT dloss, const float* VL_RESTRICT z,
                                            const float* VL_RESTRICT lse, const L* VL_RESTRICT labels,
                                            float* VL_RESTRICT dz, int64_t B, int K, float eps, int* VL_RESTRICT bad) {
  const float conf = 1.0f - eps, off = eps / static_cast<float>(K);
  const int64_t stride = static_cast<int64_t>(simt::grid_dim_x()) * simt::block_dim_x();
  for (int64_t i = static_cast<int64_t>(simt::block_x()) * simt::block_dim_x() + simt::thread_x(); i < B * K; i += stride) {
    const int64_t r = i / K, k = i % K;
    const int64_t y = static_cast<int64_t>(labels[r]);
    if (y < 0 || y >= K) {
      *bad = 1;
      continue;
    }
    const float p = expf(z[i] - lse[r]);
    dz[i] = k == y ? dloss[r] * ((p - conf) - off) : dloss[r] * (p - off);
  }
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
