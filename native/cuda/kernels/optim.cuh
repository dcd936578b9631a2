// The optimizer updates and training-loop helpers of cpu/optim.cc, with its
// orders of operations (PyTorch's): AdamW, SGD, LAMB, sum of squares, and
// in-place scale / add / lerp. torch.lerp's two branches (|w| < 0.5 or not)
// are a template argument. Reductions go through fixed chunks and one fixed
// final tree, so results do not depend on the launch. Kernel source shared
// by nvcc and the SIMT runner.
#pragma once
#include <cmath>
#include <cstdint>

#include "cuda/element.cuh"

namespace vl {
namespace cuda {
namespace kernels {

struct AdamWStep {
  float decay, lerp_weight, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps;
};

template <bool kSmallWeight>
VL_DEVICE float torch_lerp(float a, float b, float w) {
  return kSmallWeight ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

// AdamW:
//   p *= decay; m = lerp(m, g, 1 - beta1); v = v * beta2 + ((1 - beta2) * g) * g;
//   p += (-step_size * m) / (sqrt(v) / bc2_sqrt + eps)
template <bool kSmallWeight>
VL_GLOBAL void adamw_update(float* VL_RESTRICT p, const float* VL_RESTRICT g, float* VL_RESTRICT m, float* VL_RESTRICT v,
                            int64_t n, AdamWStep s) {
  const int64_t stride = static_cast<int64_t>(simt::grid_dim_x()) * simt::block_dim_x();
  for (int64_t i = static_cast<int64_t>(simt::block_x()) * simt::block_dim_x() + simt::thread_x(); i < n; i += stride) {
    const float mi = torch_lerp<kSmallWeight>(m[i], g[i], s.lerp_weight);
    const float vi = v[i] * s.beta2 + s.one_minus_beta2 * g[i] * g[i];
    const float denom = sqrtf(vi) / s.bc2_sqrt + s.eps;
    p[i] = p[i] * s.decay + s.neg_step_size * mi / denom;
    m[i] = mi;
    v[i] = vi;
  }
}

struct SgdStep {
  float neg_lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov, first_step;
};

// SGD: g += wd p; buf = first ? g : momentum buf + (1 - dampening) g;
// g = nesterov ? g + momentum buf : buf; p -= lr g. buf may be null (no momentum).
VL_GLOBAL void sgd_update(float* VL_RESTRICT p, const float* VL_RESTRICT g, float* VL_RESTRICT buf, int64_t n, SgdStep s) {
  VL_GRID_STRIDE(i, n) {
    float gi = s.weight_decay != 0.0f ? g[i] + s.weight_decay * p[i] : g[i];  // PyTorch skips the add when wd is 0
    if (buf) {
      const float b = s.first_step ? gi : buf[i] * s.momentum + s.one_minus_dampening * gi;
      buf[i] = b;
      gi = s.nesterov ? gi + s.momentum * b : b;
    }
    p[i] = p[i] + s.neg_lr * gi;
  }
}

// Elements per partial sum of the two-pass reductions (as cpu/optim.cc).
constexpr int64_t kOptimChunk = 1 << 14;
constexpr int kOptimThreads = 256;

// Sums each thread's double into partial[0] of the block (a fixed tree).
VL_DEVICE double block_sum_double(double v, double* partial) {
  partial[simt::thread_x()] = v;
  simt::sync_threads();
  for (int s = simt::block_dim_x() / 2; s > 0; s >>= 1) {
    if (simt::thread_x() < s) partial[simt::thread_x()] += partial[simt::thread_x() + s];
    simt::sync_threads();
  }
  const double total = partial[0];
  simt::sync_threads();  // partial is free again
  return total;
}

// One block per chunk: out[chunk] = sum of t^2 over it. blockDim.x = kOptimThreads.
VL_GLOBAL void sum_of_squares_chunks(const float* VL_RESTRICT t, int64_t n, double* VL_RESTRICT out) {
  VL_SHARED double partial[kOptimThreads];
  const int64_t chunks = (n + kOptimChunk - 1) / kOptimChunk;
  for (int64_t ch = simt::block_x(); ch < chunks; ch += simt::grid_dim_x()) {
    const int64_t end = (ch + 1) * kOptimChunk < n ? (ch + 1) * kOptimChunk : n;
    double acc = 0;
    for (int64_t i = ch * kOptimChunk + simt::thread_x(); i < end; i += simt::block_dim_x())
      acc += static_cast<double>(t[i]) * t[i];
    const double total = block_sum_double(acc, partial);
    if (simt::thread_x() == 0) out[ch] = total;
  }
}

// One block: sums `count` partials of `lists` interleaved lists (partial l of
// chunk c at in[c * lists + l]) into sums[l]. blockDim.x = kOptimThreads.
template <int kLists>
VL_DEVICE void sum_partials(const double* VL_RESTRICT in, int64_t count, double* sums, double* partial) {
  for (int l = 0; l < kLists; ++l) {
    double acc = 0;
    for (int64_t c = simt::thread_x(); c < count; c += simt::block_dim_x()) acc += in[c * kLists + l];
    sums[l] = block_sum_double(acc, partial);
  }
}

VL_GLOBAL void sum_of_squares_finish(const double* VL_RESTRICT chunks, int64_t count, float* VL_RESTRICT out) {
  VL_SHARED double partial[kOptimThreads];
  double s[1];
  sum_partials<1>(chunks, count, s, partial);
  if (simt::thread_x() == 0) *out = static_cast<float>(s[0]);
}

struct LambStep {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, inv_bc1, inv_bc2, eps, weight_decay, lr;
};

// u = m_hat / (sqrt(v_hat) + eps) + wd p
VL_DEVICE float lamb_direction(const LambStep& s, float m, float v, float p) {
  return (m * s.inv_bc1) / (sqrtf(v * s.inv_bc2) + s.eps) + s.weight_decay * p;
}

// LAMB pass 1, one block per chunk: the moments, and the chunk's |p|^2 and
// |u|^2 into sums[2 chunk], sums[2 chunk + 1].
VL_GLOBAL void lamb_moments(const float* VL_RESTRICT p, const float* VL_RESTRICT g, float* VL_RESTRICT m,
                            float* VL_RESTRICT v, int64_t n, LambStep s, double* VL_RESTRICT sums) {
  VL_SHARED double partial[kOptimThreads];
  const int64_t chunks = (n + kOptimChunk - 1) / kOptimChunk;
  for (int64_t ch = simt::block_x(); ch < chunks; ch += simt::grid_dim_x()) {
    const int64_t end = (ch + 1) * kOptimChunk < n ? (ch + 1) * kOptimChunk : n;
    double sp = 0, su = 0;
    for (int64_t i = ch * kOptimChunk + simt::thread_x(); i < end; i += simt::block_dim_x()) {
      const float mi = s.beta1 * m[i] + s.one_minus_beta1 * g[i];
      const float vi = s.beta2 * v[i] + s.one_minus_beta2 * g[i] * g[i];
      const float u = lamb_direction(s, mi, vi, p[i]);
      m[i] = mi;
      v[i] = vi;
      sp += static_cast<double>(p[i]) * p[i];
      su += static_cast<double>(u) * u;
    }
    sp = block_sum_double(sp, partial);
    su = block_sum_double(su, partial);
    if (simt::thread_x() == 0) {
      sums[2 * ch] = sp;
      sums[2 * ch + 1] = su;
    }
  }
}

// LAMB pass 2, one block: the step lr * |p| / |u| (1 when either is 0) into *scale.
VL_GLOBAL void lamb_trust_ratio(const double* VL_RESTRICT sums, int64_t chunks, float lr, float* VL_RESTRICT scale) {
  VL_SHARED double partial[kOptimThreads];
  double s[2];
  sum_partials<2>(sums, chunks, s, partial);
  if (simt::thread_x() == 0) *scale = static_cast<float>(lr * (s[0] > 0 && s[1] > 0 ? sqrt(s[0]) / sqrt(s[1]) : 1.0));
}

// LAMB pass 3: p -= scale u, u recomputed from the stored moments (the same
// float operations on the same values as pass 1, so the same bits).
VL_GLOBAL void lamb_apply(float* VL_RESTRICT p, const float* VL_RESTRICT m, const float* VL_RESTRICT v, int64_t n,
                          LambStep s, const float* VL_RESTRICT scale) {
  const float k = *scale;
  VL_GRID_STRIDE(i, n) p[i] = p[i] - k * lamb_direction(s, m[i], v[i], p[i]);
}

VL_GLOBAL void scale_inplace(float* VL_RESTRICT t, int64_t n, float a) {
  VL_GRID_STRIDE(i, n) t[i] = t[i] * a;
}

VL_GLOBAL void add_inplace(float* VL_RESTRICT d, const float* VL_RESTRICT src, int64_t n, float alpha) {
  VL_GRID_STRIDE(i, n) d[i] = d[i] + alpha * src[i];
}

template <bool kSmallWeight>
VL_GLOBAL void lerp_inplace(float* VL_RESTRICT d, const float* VL_RESTRICT src, int64_t n, float w) {
  VL_GRID_STRIDE(i, n) d[i] = torch_lerp<kSmallWeight>(d[i], src[i], w);
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
