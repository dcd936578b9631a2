// Cross-entropy with label smoothing (as cpu/loss.cc): per row
//   loss = lse - (1 - eps) z_y - (eps / K) sum_k z_k, lse = log sum exp z,
// and its gradient dz_k = dloss (softmax_k - (1 - eps) [k = y] - eps / K).
// A label outside [0, K) sets *bad (the launcher reports it) and its row is
// left unwritten. Also the soft-target form (mixup / CutMix targets) and
// binary cross-entropy on logits. Kernel source shared by nvcc and the SIMT runner.
#pragma once
#include <cmath>
#include <cstdint>

#include "cuda/element.cuh"
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

// Soft targets t [B, K], one block per row: loss = sum_k t_k (lse - z_k),
// accumulated in double (targets with mixed signs or tiny weights lose nothing).
template <int kThreads>
VL_GLOBAL void soft_cross_entropy_rows(const float* VL_RESTRICT z, const float* VL_RESTRICT t, float* VL_RESTRICT loss,
                                       float* VL_RESTRICT lse_out, int K) {
  VL_SHARED float partial[kThreads / 32];
  VL_SHARED double dpartial[kThreads];
  const int64_t row = simt::block_x();
  const float* zr = z + row * K;
  const float* tr = t + row * K;
  const int i = simt::thread_x();
  float m = -INFINITY;
  for (int k = i; k < K; k += kThreads) m = fmaxf(m, zr[k]);
  m = block_reduce<MaxOp>(m, partial);
  float s = 0.0f;
  for (int k = i; k < K; k += kThreads) s += expf(zr[k] - m);
  const float lse = m + logf(block_reduce<SumOp>(s, partial));
  double v = 0;
  for (int k = i; k < K; k += kThreads) v += static_cast<double>(tr[k]) * (static_cast<double>(lse) - zr[k]);
  dpartial[i] = v;
  simt::sync_threads();
  for (int h = kThreads / 2; h > 0; h >>= 1) {
    if (i < h) dpartial[i] += dpartial[i + h];
    simt::sync_threads();
  }
  if (i == 0) {
    lse_out[row] = lse;
    loss[row] = static_cast<float>(dpartial[0]);
  }
}

// One block per row: dz_k = dloss (softmax_k * sum_j t_j - t_k).
template <int kThreads>
VL_GLOBAL void soft_cross_entropy_backward_rows(const float* VL_RESTRICT dloss, const float* VL_RESTRICT z,
                                                const float* VL_RESTRICT lse, const float* VL_RESTRICT t,
                                                float* VL_RESTRICT dz, int K) {
  VL_SHARED float partial[kThreads / 32];
  const int64_t row = simt::block_x();
  const float* tr = t + row * K;
  float total = 0.0f;
  for (int k = simt::thread_x(); k < K; k += kThreads) total += tr[k];
  total = block_reduce<SumOp>(total, partial);
  const float d = dloss[row], l = lse[row];
  for (int k = simt::thread_x(); k < K; k += kThreads) {
    const int64_t i = row * K + k;
    dz[i] = d * (expf(z[i] - l) * total - tr[k]);
  }
}

// Binary cross-entropy on logits, elementwise: max(z, 0) - z t + log1p(exp(-|z|)).
VL_GLOBAL void bce_with_logits(const float* VL_RESTRICT z, const float* VL_RESTRICT t, float* VL_RESTRICT loss, int64_t n) {
  VL_GRID_STRIDE(i, n) loss[i] = fmaxf(z[i], 0.0f) - z[i] * t[i] + log1pf(expf(-fabsf(z[i])));
}

// dz = dloss (sigmoid(z) - t), with exp of a non-positive argument only (no overflow for large |z|).
VL_GLOBAL void bce_with_logits_backward(const float* VL_RESTRICT d, const float* VL_RESTRICT z,
                                        const float* VL_RESTRICT t, float* VL_RESTRICT dz, int64_t n) {
  VL_GRID_STRIDE(i, n) {
    const float ez = expf(-fabsf(z[i]));
    const float sig = z[i] >= 0.0f ? 1.0f / (1.0f + ez) : ez / (1.0f + ez);
    dz[i] = d[i] * (sig - t[i]);
  }
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
