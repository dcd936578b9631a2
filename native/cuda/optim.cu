// The optimizer updates (AdamW, SGD, LAMB) and training-loop helpers (sum of
// squares, in-place scale / add / lerp) on CUDA, with the contracts of
// cpu/optim.cc. Kernels: cuda/kernels/optim.cuh, which the test suite runs
// through the SIMT runner against references. Nothing here waits for the
// device: LAMB's trust ratio stays in device memory between its passes.
#include <algorithm>
#include <cmath>

#include "core/backend.h"
#include "core/dispatch.h"
#include "cuda/cuda_check.cuh"
#include "cuda/kernels/optim.cuh"
#include "cuda/runtime.cuh"

namespace vl {
namespace cuda {
namespace {

constexpr int kThreads = 256;

float attr_f(const KernelCall& c, const char* name) { return static_cast<float>(c.attrs.num(name)); }
float* out_f(const KernelCall& c, size_t i) { return static_cast<float*>(c.out[i].data); }
const float* in_f(const KernelCall& c, size_t i) { return static_cast<const float*>(c.in[i].data); }
unsigned elementwise_blocks(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 8192)); }
int64_t chunks_of(int64_t n) { return (n + kernels::kOptimChunk - 1) / kernels::kOptimChunk; }
unsigned chunk_blocks(int64_t chunks) { return static_cast<unsigned>(std::min<int64_t>(chunks, 65535)); }

// Scratch from the device allocator: handing it back right after queuing is
// safe because everything on this device runs in stream order.
StoragePtr scratch(const KernelCall& c, size_t bytes) { return backend_for(c.device).allocate(c.device, bytes); }

// in: param, grad, exp_avg, exp_avg_sq; out: param, exp_avg, exp_avg_sq (the same tensors)
void adamw_update(const KernelCall& c) {
  const int64_t n = c.out[0].numel;
  const int dev = c.device.index;
  const kernels::AdamWStep s{attr_f(c, "decay"),         attr_f(c, "lerp_weight"),   attr_f(c, "beta2"),
                             attr_f(c, "one_minus_beta2"), attr_f(c, "neg_step_size"), attr_f(c, "bc2_sqrt"),
                             attr_f(c, "eps")};
  const unsigned blocks = elementwise_blocks(n);
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

// in: param, grad, [momentum_buffer]; out: param, [momentum_buffer]
void sgd_update(const KernelCall& c) {
  const int64_t n = c.out[0].numel;
  const int dev = c.device.index;
  const kernels::SgdStep s{-attr_f(c, "lr"), attr_f(c, "momentum"), attr_f(c, "one_minus_dampening"),
                           attr_f(c, "weight_decay"), c.attrs.integer("nesterov") != 0,
                           c.attrs.integer("first_step") != 0};
  float* buf = c.out.size() > 1 ? out_f(c, 1) : nullptr;
  kernels::sgd_update<<<elementwise_blocks(n), kThreads, 0, current_stream(dev)>>>(out_f(c, 0), in_f(c, 1), buf, n, s);
  check_launch("sgd_update", dev);
}

// in: param, grad, exp_avg, exp_avg_sq; out: param, exp_avg, exp_avg_sq
void lamb_update(const KernelCall& c) {
  const int64_t n = c.out[0].numel, chunks = chunks_of(n);
  const int dev = c.device.index;
  cudaStream_t stream = current_stream(dev);
  const kernels::LambStep s{attr_f(c, "beta1"),   attr_f(c, "one_minus_beta1"), attr_f(c, "beta2"),
                            attr_f(c, "one_minus_beta2"), attr_f(c, "inv_bc1"), attr_f(c, "inv_bc2"),
                            attr_f(c, "eps"),     attr_f(c, "weight_decay"),    attr_f(c, "lr")};
  StoragePtr buf = scratch(c, static_cast<size_t>(2 * chunks) * sizeof(double) + sizeof(float));
  double* sums = static_cast<double*>(buf->data());
  float* scale = reinterpret_cast<float*>(sums + 2 * chunks);
  float* p = out_f(c, 0);
  float* m = out_f(c, 1);
  float* v = out_f(c, 2);
  kernels::lamb_moments<<<chunk_blocks(chunks), kernels::kOptimThreads, 0, stream>>>(p, in_f(c, 1), m, v, n, s, sums);
  check_launch("lamb_update", dev);
  kernels::lamb_trust_ratio<<<1, kernels::kOptimThreads, 0, stream>>>(sums, chunks, static_cast<float>(c.attrs.num("lr")), scale);
  check_launch("lamb_update", dev);
  kernels::lamb_apply<<<elementwise_blocks(n), kThreads, 0, stream>>>(p, m, v, n, s, scale);
  check_launch("lamb_update", dev);
}

// in: t (f32, contiguous, not empty); out: [] the sum of t^2
void sum_of_squares(const KernelCall& c) {
  const int64_t n = c.in[0].numel, chunks = chunks_of(n);
  const int dev = c.device.index;
  cudaStream_t stream = current_stream(dev);
  StoragePtr buf = scratch(c, static_cast<size_t>(chunks) * sizeof(double));
  double* part = static_cast<double*>(buf->data());
  kernels::sum_of_squares_chunks<<<chunk_blocks(chunks), kernels::kOptimThreads, 0, stream>>>(in_f(c, 0), n, part);
  check_launch("sum_of_squares", dev);
  kernels::sum_of_squares_finish<<<1, kernels::kOptimThreads, 0, stream>>>(part, chunks, out_f(c, 0));
  check_launch("sum_of_squares", dev);
}

// in: t; out: t *= scale
void scale_inplace(const KernelCall& c) {
  const int64_t n = c.out[0].numel;
  const int dev = c.device.index;
  kernels::scale_inplace<<<elementwise_blocks(n), kThreads, 0, current_stream(dev)>>>(out_f(c, 0), n, attr_f(c, "scale"));
  check_launch("scale_inplace", dev);
}

// in: dst, src; out: dst += alpha src
void add_inplace(const KernelCall& c) {
  const int64_t n = c.out[0].numel;
  const int dev = c.device.index;
  kernels::add_inplace<<<elementwise_blocks(n), kThreads, 0, current_stream(dev)>>>(out_f(c, 0), in_f(c, 1), n,
                                                                                     attr_f(c, "alpha"));
  check_launch("add_inplace", dev);
}

// in: dst, src; out: dst = lerp(dst, src, weight)
void lerp_inplace(const KernelCall& c) {
  const int64_t n = c.out[0].numel;
  const int dev = c.device.index;
  const float w = attr_f(c, "weight");
  cudaStream_t stream = current_stream(dev);
  if (std::fabs(w) < 0.5f)
    kernels::lerp_inplace<true><<<elementwise_blocks(n), kThreads, 0, stream>>>(out_f(c, 0), in_f(c, 1), n, w);
  else
    kernels::lerp_inplace<false><<<elementwise_blocks(n), kThreads, 0, stream>>>(out_f(c, 0), in_f(c, 1), n, w);
  check_launch("lerp_inplace", dev);
}

}  // namespace

VL_REGISTER_KERNEL(adamw_update, CUDA, adamw_update);
VL_REGISTER_KERNEL(sgd_update, CUDA, sgd_update);
VL_REGISTER_KERNEL(lamb_update, CUDA, lamb_update);
VL_REGISTER_KERNEL(sum_of_squares, CUDA, sum_of_squares);
VL_REGISTER_KERNEL(scale_inplace, CUDA, scale_inplace);
VL_REGISTER_KERNEL(add_inplace, CUDA, add_inplace);
VL_REGISTER_KERNEL(lerp_inplace, CUDA, lerp_inplace);

}  // namespace cuda
}  // namespace vl
