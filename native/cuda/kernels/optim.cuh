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

// AdamW, element i:
//   p *= decay; m = lerp(m, g, 1 - beta1); v = v * beta2 + ((1 - beta2) * g) * g;
//   p += (-step_size * m) / (sqrt(v) / bc2_sqrt + eps)
template <bool kSmallWeight>
VL_DEVICE void adamw_element(float* VL_RESTRICT p, const float* VL_RESTRICT g, float* VL_RESTRICT m,
                             float* VL_RESTRICT v, int64_t i, const AdamWStep& s) {
  const float mi = torch_lerp<kSmallWeight>(m[i], g[i], s.lerp_weight);
  const float vi = v[i] * s.beta2 + s.one_minus_beta2 * g[i] * g[i];
  const float denom = sqrtf(vi) / s.bc2_sqrt + s.eps;
  p[i] = p[i] * s.decay + s.neg_step_size * mi / denom;
  m[i] = mi;
  v[i] = vi;
}

template <bool kSmallWeight>
VL_GLOBAL void adamw_update(float* VL_RESTRICT p, const float* VL_RESTRICT g, float* VL_RESTRICT m, float* VL_RESTRICT v,
                            int64_t n, AdamWStep s) {
  VL_GRID_STRIDE(i, n) adamw_element<kSmallWeight>(p, g, m, v, i, s);
}

struct SgdStep {
  float neg_lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov, first_step;
};

// SGD, element i: g += wd p; buf = first ? g : momentum buf + (1 - dampening) g;
// g = nesterov ? g + momentum buf : buf; p -= lr g. buf may be null (no momentum).
VL_DEVICE void sgd_element(float* VL_RESTRICT p, const float* VL_RESTRICT g, float* VL_RESTRICT buf, int64_t i,
                           const SgdStep& s) {
  float gi = s.weight_decay != 0.0f ? g[i] + s.weight_decay * p[i] : g[i];  // PyTorch skips the add when wd is 0
  if (buf) {
    const float b = s.first_step ? gi : buf[i] * s.momentum + s.one_minus_dampening * gi;
    buf[i] = b;
    gi = s.nesterov ? gi + s.momentum * b : b;
  }
  p[i] = p[i] + s.neg_lr * gi;
}

VL_GLOBAL void sgd_update(float* VL_RESTRICT p, const float* VL_RESTRICT g, float* VL_RESTRICT buf, int64_t n, SgdStep s) {
  VL_GRID_STRIDE(i, n) sgd_element(p, g, buf, i, s);
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

// LAMB pass 1 over the elements [begin, end) of one chunk, by the whole
// block: the moments, and the chunk's |p|^2 and |u|^2 into out[0], out[1].
VL_DEVICE void lamb_chunk(const float* VL_RESTRICT p, const float* VL_RESTRICT g, float* VL_RESTRICT m,
                          float* VL_RESTRICT v, int64_t begin, int64_t end, const LambStep& s, double* partial,
                          double* VL_RESTRICT out) {
  double sp = 0, su = 0;
  for (int64_t i = begin + simt::thread_x(); i < end; i += simt::block_dim_x()) {
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
    out[0] = sp;
    out[1] = su;
  }
}

// LAMB pass 1, one block per chunk: sums[2 chunk], sums[2 chunk + 1].
VL_GLOBAL void lamb_moments(const float* VL_RESTRICT p, const float* VL_RESTRICT g, float* VL_RESTRICT m,
                            float* VL_RESTRICT v, int64_t n, LambStep s, double* VL_RESTRICT sums) {
  VL_SHARED double partial[kOptimThreads];
  const int64_t chunks = (n + kOptimChunk - 1) / kOptimChunk;
  for (int64_t ch = simt::block_x(); ch < chunks; ch += simt::grid_dim_x()) {
    const int64_t end = (ch + 1) * kOptimChunk < n ? (ch + 1) * kOptimChunk : n;
    lamb_chunk(p, g, m, v, ch * kOptimChunk, end, s, partial, sums + 2 * ch);
  }
}

// LAMB pass 2 by one block: the step lr * |p| / |u| (1 when either is 0) from
// the `chunks` interleaved partials of one tensor.
VL_DEVICE float lamb_scale(const double* VL_RESTRICT sums, int64_t chunks, float lr, double* partial) {
  double s[2];
  sum_partials<2>(sums, chunks, s, partial);
  return static_cast<float>(lr * (s[0] > 0 && s[1] > 0 ? sqrt(s[0]) / sqrt(s[1]) : 1.0));
}

VL_GLOBAL void lamb_trust_ratio(const double* VL_RESTRICT sums, int64_t chunks, float lr, float* VL_RESTRICT scale) {
  VL_SHARED double partial[kOptimThreads];
  const float k = lamb_scale(sums, chunks, lr, partial);
  if (simt::thread_x() == 0) *scale = k;
}

// LAMB pass 3, element i: p -= scale u, u recomputed from the stored moments
// (the same float operations on the same values as pass 1, so the same bits).
VL_DEVICE void lamb_apply_element(float* VL_RESTRICT p, const float* VL_RESTRICT m, const float* VL_RESTRICT v,
                                  int64_t i, const LambStep& s, float scale) {
  p[i] = p[i] - scale * lamb_direction(s, m[i], v[i], p[i]);
}

VL_GLOBAL void lamb_apply(float* VL_RESTRICT p, const float* VL_RESTRICT m, const float* VL_RESTRICT v, int64_t n,
                          LambStep s, const float* VL_RESTRICT scale) {
  const float k = *scale;
  VL_GRID_STRIDE(i, n) lamb_apply_element(p, m, v, i, s, k);
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


// ---- Multi-tensor apply (the optimizer step over all parameters at once) ----
//
// A table of tensors (pointers, sizes, per-tensor step factors) travels as
// the kernel's parameter, so a launch reads no host-built memory and needs no
// copy before it. Each tensor is cut into kOptimChunk-element chunks and
// block b of a launch works on the table's chunk b: tensor_of(b) finds its
// tensor. A LAMB chunk is the chunk of the per-tensor kernels, so the
// per-tensor partial sums (and results) are the same bits.
//
// Kernel parameters may take 32764 bytes on Volta and newer with CUDA 12.1+
// (every driver that runs a CUDA 13 build); a table takes at most
// kMultiTensorTableBytes of it, leaving room for the kernels' other
// arguments. That is several hundred tensors per launch (a ViT-S has ~150),
// so a model's step is one launch per pass; longer lists are split into
// several tables.
constexpr size_t kMultiTensorTableBytes = 32000;

// kLists pointers per tensor (null where a list is absent, e.g. SGD's
// momentum buffers without momentum) and a Step of factors per tensor.
template <int kLists, typename Step>
struct TensorTable {
  static constexpr int kMax = static_cast<int>((kMultiTensorTableBytes - 32) /
                                               (kLists * sizeof(float*) + 2 * sizeof(int64_t) + sizeof(Step)));
  float* ptr[kLists][kMax];
  int64_t numel[kMax];
  int64_t first_chunk[kMax + 1];  // tensor k has the table's chunks [first_chunk[k], first_chunk[k + 1])
  Step step[kMax];
  int64_t chunk_base;  // the table's first chunk among all the call's chunks
  int count;           // tensors in the table
  int tensor_base;     // the table's first tensor among all the call's tensors

  // The tensor of chunk c (0 <= c < first_chunk[count]), by bisection.
  VL_DEVICE int tensor_of(int64_t c) const {
    int lo = 0, hi = count - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (first_chunk[mid] <= c) lo = mid; else hi = mid - 1;
    }
    return lo;
  }
};

inline int64_t optim_chunks(int64_t n) { return (n + kOptimChunk - 1) / kOptimChunk; }

// Host side: fills tables of at most `max_per_table` tensors (fill(table, k,
// i) sets ptr[..][k], numel[k] and step[k] from tensor i of the call) and
// calls launch(table, chunks) for each, in order.
template <typename Table, typename Fill, typename Launch>
void for_each_table(int64_t count, Fill&& fill, Launch&& launch, int max_per_table = Table::kMax) {
  Table t{};
  int64_t chunks = 0, chunk_base = 0;
  for (int64_t i = 0; i < count; ++i) {
    const int k = t.count;
    fill(t, k, i);
    t.first_chunk[k] = chunks;
    chunks += optim_chunks(t.numel[k]);
    t.count = k + 1;
    if (t.count == max_per_table || i + 1 == count) {
      t.first_chunk[t.count] = chunks;
      t.chunk_base = chunk_base;
      t.tensor_base = static_cast<int>(i + 1 - t.count);
      if (chunks > 0) launch(static_cast<const Table&>(t), chunks);
      chunk_base += chunks;
      chunks = 0;
      t = Table{};
    }
  }
}

// The block's chunk of the table: tensor k, elements [begin, end).
struct TableChunk {
  int k;
  int64_t begin, end;
};
template <typename Table>
VL_DEVICE TableChunk table_chunk(const Table& t) {
  const int64_t c = simt::block_x();
  const int k = t.tensor_of(c);
  const int64_t begin = (c - t.first_chunk[k]) * kOptimChunk;
  return TableChunk{k, begin, begin + kOptimChunk < t.numel[k] ? begin + kOptimChunk : t.numel[k]};
}

// Dynamic loss scaling: the multi-tensor updates take an optional device
// flag (an f32, nonzero when a gradient held inf or NaN) and then change
// nothing, so an overflowed step is skipped without the host reading it.
VL_DEVICE bool skip_step(const float* found_inf) { return found_inf != nullptr && *found_inf != 0.0f; }

struct NoStep {};  // the unscale pass has no per-tensor factors

using AdamWTable = TensorTable<4, AdamWStep>;  // param, grad, exp_avg, exp_avg_sq
using SgdTable = TensorTable<3, SgdStep>;      // param, grad, momentum buffer (or null)
using LambTable = TensorTable<4, LambStep>;    // param, grad, exp_avg, exp_avg_sq
using UnscaleTable = TensorTable<1, NoStep>;   // grad
static_assert(sizeof(AdamWTable) <= kMultiTensorTableBytes && sizeof(SgdTable) <= kMultiTensorTableBytes &&
                  sizeof(LambTable) <= kMultiTensorTableBytes && sizeof(UnscaleTable) <= kMultiTensorTableBytes,
              "a tensor table must fit in the kernel parameter space");

template <bool kSmallWeight>
VL_GLOBAL void adamw_update_multi(const AdamWTable t, const float* VL_RESTRICT found_inf) {
  if (skip_step(found_inf)) return;
  const TableChunk c = table_chunk(t);
  for (int64_t i = c.begin + simt::thread_x(); i < c.end; i += simt::block_dim_x())
    adamw_element<kSmallWeight>(t.ptr[0][c.k], t.ptr[1][c.k], t.ptr[2][c.k], t.ptr[3][c.k], i, t.step[c.k]);
}

VL_GLOBAL void sgd_update_multi(const SgdTable t, const float* VL_RESTRICT found_inf) {
  if (skip_step(found_inf)) return;
  const TableChunk c = table_chunk(t);
  for (int64_t i = c.begin + simt::thread_x(); i < c.end; i += simt::block_dim_x())
    sgd_element(t.ptr[0][c.k], t.ptr[1][c.k], t.ptr[2][c.k], i, t.step[c.k]);
}

// LAMB pass 1 (blockDim.x = kOptimThreads): the partials of chunk c of the
// call at sums[2 c], sums[2 c + 1].
VL_GLOBAL void lamb_moments_multi(const LambTable t, double* VL_RESTRICT sums, const float* VL_RESTRICT found_inf) {
  VL_SHARED double partial[kOptimThreads];
  if (skip_step(found_inf)) return;  // the whole block: no barrier is left half-reached
  const TableChunk c = table_chunk(t);
  lamb_chunk(t.ptr[0][c.k], t.ptr[1][c.k], t.ptr[2][c.k], t.ptr[3][c.k], c.begin, c.end, t.step[c.k], partial,
             sums + 2 * (t.chunk_base + simt::block_x()));
}

// LAMB pass 2, one block per tensor of the table (blockDim.x = kOptimThreads):
// scales[tensor] = lr * its trust ratio.
VL_GLOBAL void lamb_trust_ratio_multi(const LambTable t, const double* VL_RESTRICT sums, float* VL_RESTRICT scales,
                                       const float* VL_RESTRICT found_inf) {
  VL_SHARED double partial[kOptimThreads];
  if (skip_step(found_inf)) return;
  const int k = simt::block_x();
  const float scale = lamb_scale(sums + 2 * (t.chunk_base + t.first_chunk[k]), t.first_chunk[k + 1] - t.first_chunk[k],
                                 t.step[k].lr, partial);
  if (simt::thread_x() == 0) scales[t.tensor_base + k] = scale;
}

// LAMB pass 3: p -= scales[tensor] u.
VL_GLOBAL void lamb_apply_multi(const LambTable t, const float* VL_RESTRICT scales, const float* VL_RESTRICT found_inf) {
  if (skip_step(found_inf)) return;
  const TableChunk c = table_chunk(t);
  const float scale = scales[t.tensor_base + c.k];
  for (int64_t i = c.begin + simt::thread_x(); i < c.end; i += simt::block_dim_x())
    lamb_apply_element(t.ptr[0][c.k], t.ptr[2][c.k], t.ptr[3][c.k], i, t.step[c.k], scale);
}

// Unscale pass of dynamic loss scaling: g *= inv_scale over every gradient
// of the table, and *found_inf = 1 when any g was inf or NaN before (the
// flag is only ever set here, never cleared: the caller zeroes it per step,
// so several tables and devices' passes combine by or). Threads that see a
// bad value all store the same 1, so their race is benign.
VL_DEVICE bool non_finite(float v) { return !(fabsf(v) <= 3.40282347e38f); }  // true for inf and NaN

VL_GLOBAL void unscale_multi(const UnscaleTable t, float inv_scale, float* VL_RESTRICT found_inf) {
  const TableChunk c = table_chunk(t);
  float* g = t.ptr[0][c.k];
  bool bad = false;
  for (int64_t i = c.begin + simt::thread_x(); i < c.end; i += simt::block_dim_x()) {
    bad |= non_finite(g[i]);
    g[i] = g[i] * inv_scale;
  }
  if (bad) *found_inf = 1.0f;
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
