// Classification losses and their gradients: cross-entropy over class logits
// (hard labels with optional label smoothing, or soft targets) and binary
// cross-entropy on logits. Rows are independent, so results do not depend on
// the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/dispatch.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/element.h"
#include "cpu/simd/isa.h"

namespace vl {
namespace cpu {
namespace {

int64_t rows_grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(width, 1)); }

int64_t label_at(const TensorArg& labels, int64_t i) {
  return labels.dtype == DType::I32 ? static_cast<const int32_t*>(labels.data)[i]
                                    : static_cast<const int64_t*>(labels.data)[i];
}

// The launcher cannot see label values without waiting for the stream, so
// they are checked here, before anything is read with them. The first bad
// label is reported (a fixed choice, whatever the thread count); the failure
// poisons the outputs and surfaces when they are read.
void check_labels(const TensorArg& labels, int64_t K) {
  for (int64_t i = 0; i < labels.numel; ++i) {
    const int64_t y = label_at(labels, i);
    VL_CHECK(y >= 0 && y < K, ErrorCode::Argument, "label ", y, " at row ", i, " is out of range for ", K,
             " classes (expected 0 <= label < ", K, ")");
  }
}

// Log-sum-exp of one row, max-subtracted; `buf` (n floats) is scratch.
float row_lse(const IsaKernels& k, const float* z, float* buf, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = z[i] > m ? z[i] : m;
  for (int64_t i = 0; i < n; ++i) buf[i] = z[i] - m;
  k.exp(buf, buf, n);
  return m + std::log(k.sum_f32(buf, n));
}

// softmax(z) = exp(z - lse) into p.
void row_softmax(const IsaKernels& k, const float* z, float lse, float* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = z[i] - lse;
  k.exp(p, p, n);
}

// in: logits [B, K], labels [B] (i32/i64); out: loss [B], lse [B]; attrs: smoothing
// loss_i = lse_i - (1 - eps) z_{i,y_i} - (eps / K) sum_k z_ik
void cross_entropy(const KernelCall& c) {
  const TensorArg& logits = c.in[0];
  const int64_t B = logits.shape[0], K = logits.shape[1];
  check_labels(c.in[1], K);
  const double eps = c.attrs.num("smoothing");
  const float* z = static_cast<const float*>(logits.data);
  float* loss = static_cast<float*>(c.out[0].data);
  float* lse = static_cast<float*>(c.out[1].data);
  const IsaKernels& k = isa_kernels();
  parallel_for(B, rows_grain(K), [&](int64_t s, int64_t e) {
    std::vector<float> buf(static_cast<size_t>(K));
    for (int64_t r = s; r < e; ++r) {
      const float* zr = z + r * K;
      const float l = row_lse(k, zr, buf.data(), K);
      double v = static_cast<double>(l) - (1.0 - eps) * zr[label_at(c.in[1], r)];
      if (eps > 0) v -= eps / static_cast<double>(K) * k.sum_f32(zr, K);
      lse[r] = l;
      loss[r] = static_cast<float>(v);
    }
  });
}

// in: dloss [B], logits [B, K], lse [B], labels [B]; out: dlogits [B, K]
// dlogits_ik = dloss_i * (softmax_ik - (1 - eps) [k = y_i] - eps / K)
void cross_entropy_backward(const KernelCall& c) {
  const TensorArg& logits = c.in[1];
  const int64_t B = logits.shape[0], K = logits.shape[1];
  check_labels(c.in[3], K);
  const double eps = c.attrs.num("smoothing");
  const float conf = static_cast<float>(1.0 - eps), off = static_cast<float>(eps / static_cast<double>(K));
  const float* dloss = static_cast<const float*>(c.in[0].data);
  const float* z = static_cast<const float*>(logits.data);
  const float* lse = static_cast<const float*>(c.in[2].data);
  float* dz = static_cast<float*>(c.out[0].data);
  const IsaKernels& k = isa_kernels();
  parallel_for(B, rows_grain(K), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) {
      float* o = dz + r * K;
      row_softmax(k, z + r * K, lse[r], o, K);
      const int64_t y = label_at(c.in[3], r);
      const float d = dloss[r], py = o[y];
      for (int64_t i = 0; i < K; ++i) o[i] = d * (o[i] - off);
      o[y] = d * ((py - conf) - off);
    }
  });
}

// in: logits [B, K], targets [B, K]; out: loss [B], lse [B]
// loss_i = sum_k t_ik (lse_i - z_ik)
void soft_cross_entropy(const KernelCall& c) {
  const TensorArg& logits = c.in[0];
  const int64_t B = logits.shape[0], K = logits.shape[1];
  const float* z = static_cast<const float*>(logits.data);
  const float* t = static_cast<const float*>(c.in[1].data);
  float* loss = static_cast<float*>(c.out[0].data);
  float* lse = static_cast<float*>(c.out[1].data);
  const IsaKernels& k = isa_kernels();
  parallel_for(B, rows_grain(K), [&](int64_t s, int64_t e) {
    std::vector<float> buf(static_cast<size_t>(K));
    for (int64_t r = s; r < e; ++r) {
      const float* zr = z + r * K;
      const float* tr = t + r * K;
      const float l = row_lse(k, zr, buf.data(), K);
      double v = 0;  // in double: targets with mixed signs or tiny weights lose nothing
      for (int64_t i = 0; i < K; ++i) v += static_cast<double>(tr[i]) * (static_cast<double>(l) - zr[i]);
      lse[r] = l;
      loss[r] = static_cast<float>(v);
    }
  });
}

// in: dloss [B], logits [B, K], lse [B], targets [B, K]; out: dlogits [B, K]
// dlogits_ik = dloss_i * (softmax_ik * sum_k t_ik - t_ik)
void soft_cross_entropy_backward(const KernelCall& c) {
  const TensorArg& logits = c.in[1];
  const int64_t B = logits.shape[0], K = logits.shape[1];
  const float* dloss = static_cast<const float*>(c.in[0].data);
  const float* z = static_cast<const float*>(logits.data);
  const float* lse = static_cast<const float*>(c.in[2].data);
  const float* t = static_cast<const float*>(c.in[3].data);
  float* dz = static_cast<float*>(c.out[0].data);
  const IsaKernels& k = isa_kernels();
  parallel_for(B, rows_grain(K), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) {
      float* o = dz + r * K;
      const float* tr = t + r * K;
      row_softmax(k, z + r * K, lse[r], o, K);
      const float total = k.sum_f32(tr, K), d = dloss[r];
      for (int64_t i = 0; i < K; ++i) o[i] = d * (o[i] * total - tr[i]);
    }
  });
}

// in: logits, targets (same shape); out: loss = max(z, 0) - z t + log1p(exp(-|z|))
void bce_with_logits(const KernelCall& c) {
  const float* z = static_cast<const float*>(c.in[0].data);
  const float* t = static_cast<const float*>(c.in[1].data);
  float* loss = static_cast<float*>(c.out[0].data);
  parallel_for(c.out[0].numel, kElementGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i)
      loss[i] = std::max(z[i], 0.0f) - z[i] * t[i] + std::log1p(std::exp(-std::fabs(z[i])));
  });
}

// in: dloss, logits, targets; out: dlogits = dloss * (sigmoid(z) - t)
void bce_with_logits_backward(const KernelCall& c) {
  const float* d = static_cast<const float*>(c.in[0].data);
  const float* z = static_cast<const float*>(c.in[1].data);
  const float* t = static_cast<const float*>(c.in[2].data);
  float* dz = static_cast<float*>(c.out[0].data);
  parallel_for(c.out[0].numel, kElementGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) {
      // exp of a non-positive argument only: no overflow for large |z|
      const float ez = std::exp(-std::fabs(z[i]));
      const float sig = z[i] >= 0 ? 1.0f / (1.0f + ez) : ez / (1.0f + ez);
      dz[i] = d[i] * (sig - t[i]);
    }
  });
}

}  // namespace

VL_REGISTER_KERNEL(cross_entropy, CPU, cross_entropy);
VL_REGISTER_KERNEL(cross_entropy_backward, CPU, cross_entropy_backward);
VL_REGISTER_KERNEL(soft_cross_entropy, CPU, soft_cross_entropy);
VL_REGISTER_KERNEL(soft_cross_entropy_backward, CPU, soft_cross_entropy_backward);
VL_REGISTER_KERNEL(bce_with_logits, CPU, bce_with_logits);
VL_REGISTER_KERNEL(bce_with_logits_backward, CPU, bce_with_logits_backward);

}  // namespace cpu
}  // namespace vl
