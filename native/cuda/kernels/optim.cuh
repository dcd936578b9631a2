// The AdamW update with torch.optim.AdamW's order of operations (as
// cpu/optim.cc):
//   p *= decay; m = lerp(m, g, 1 - beta1); v = v * beta2 + ((1 - beta2) * g) * g;
//   p += (-step_size * m) / (sqrt(v) / bc2_sqrt + eps)
// torch.lerp's two branches (|w| < 0.5 or not) are a template argument.
// Kernel source shared by nvcc and the SIMT runner.
#pragma once
#include <cmath>
#include <cstdint>

#include "cuda/simt.cuh"

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

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
