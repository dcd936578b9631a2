// The AdamW update on CUDA, with the contract of cpu/optim.cc. Kernel:
// cuda/kernels/optim.cuh, which the test suite runs through the SIMT runner
// against a reference.
#include <algorithm>
#include <cmath>

#include "core/dispatch.h"
#include "cuda/cuda_check.cuh"
#include "cuda/kernels/optim.cuh"
#include "cuda/runtime.cuh"

namespace vl {
namespace cuda {
namespace {

constexpr int kThreads = 256;

float attr_f(const KernelCall& c, const char* name) { return static_cast<float>(c.attrs.num(name)); }

// in: param, grad, exp_avg, exp_avg_sq; out: param, exp_avg, exp_avg_sq (the same tensors)
void adamw_update(const KernelCall& c) {
  const int64_t n = c.out[0].numel;
  const int dev = c.device.index;
  const kernels::AdamWStep s{attr_f(c, "decay"),         attr_f(c, "lerp_weight"),   attr_f(c, "beta2"),
                             attr_f(c, "one_minus_beta2"), attr_f(c, "neg_step_size"), attr_f(c, "bc2_sqrt"),
                             attr_f(c, "eps")};
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 8192));
  float* p = static_cast<float*>(c.out[0].data);
  const float* g = static_cast<const float*>(c.in[1].data);
  float* m = static_cast<float*>(c.out[1].data);
  float* v = static_cast<float*>(c.out[2].data);
  cudaStream_t stream = current_stream(dev);
  if (std::fabs(s.lerp_weight) < 0.5f)
    kernels::adamw_update<true><<<blocks, kThreads, 0, stream>>>(p, g, m, v, n, s);
  else
    kernels::adamw_update<false><<<blocks, kThreads, 0, stream>>>(p, g, m, v, n, s);
  check_launch("adamw_update", dev);
}

}  // namespace

VL_REGISTER_KERNEL(adamw_update, CUDA, adamw_update);

}  // namespace cuda
}  // namespace vl
