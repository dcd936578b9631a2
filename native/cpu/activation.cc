// Softmax over the last dimension and the elementwise activations.
#include <cmath>

#include "core/dispatch.h"
#include "core/thread_pool.h"
#include "cpu/element.h"
#include "cpu/simd/isa.h"

namespace vl {
namespace cpu {
namespace {

// in: x [rows, n] contiguous; out: y, [lse [rows]]
void softmax(const KernelCall& c) {
  const TensorArg& x = c.in[0];
  const int64_t n = x.shape[x.ndim - 1], rows = n ? x.numel / n : 0;
  const float* px = static_cast<const float*>(x.data);
  float* py = static_cast<float*>(c.out[0].data);
  float* lse = c.out.size() > 1 ? static_cast<float*>(c.out[1].data) : nullptr;
  const auto row = isa_kernels().softmax_row;
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) row(px + r * n, py + r * n, n, lse ? lse + r : nullptr);
  });
}

void silu(const KernelCall& c) {
  const float* px = static_cast<const float*>(c.in[0].data);
  float* py = static_cast<float*>(c.out[0].data);
  const auto fn = isa_kernels().silu;
  parallel_for(c.out[0].numel, kElementGrain, [&](int64_t s, int64_t e) { fn(px + s, py + s, e - s); });
}

// GELU with the exact erf (as torch.nn.GELU()).
void gelu(const KernelCall& c) {
  const float* px = static_cast<const float*>(c.in[0].data);
  float* py = static_cast<float*>(c.out[0].data);
  parallel_for(c.out[0].numel, kElementGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) py[i] = 0.5f * px[i] * (1.0f + std::erf(px[i] * 0.70710678118654752f));
  });
}

}  // namespace

VL_REGISTER_KERNEL(softmax, CPU, softmax);
VL_REGISTER_KERNEL(silu, CPU, silu);
VL_REGISTER_KERNEL(gelu, CPU, gelu);

}  // namespace cpu
}  // namespace vl
