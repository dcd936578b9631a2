// The optimizer updates (AdamW, SGD, LAMB) and training-loop helpers (sum of
// squares, in-place scale / add / lerp, the unscale pass of loss scaling) on
// CUDA, with the contracts of cpu/optim.cc. Kernels: cuda/kernels/optim.cuh,
// which the test suite runs through the SIMT runner against references.
// Nothing here waits for the device: LAMB's trust ratio stays in device
// memory between its passes, and the found-inf flag is read by the kernels.
#include <algorithm>
#include <cmath>
#include <vector>

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
int64_t chunks_of(int64_t n) { return kernels::optim_chunks(n); }
unsigned chunk_blocks(int64_t chunks) { return static_cast<unsigned>(std::min<int64_t>(chunks, 65535)); }

// Scratch from the device allocator: handing it back right after queuing is
// safe because everything on this device runs in stream order.
StoragePtr scratch(const KernelCall& c, size_t bytes) { return backend_for(c.device).allocate(c.device, bytes); }

// The optional found-inf flag of a multi-tensor update (attr found_inf = 1):
// its last input, read by the kernels on the device. Null without one.
const float* found_inf_of(const KernelCall& c) {
  return c.attrs.integer("found_inf") != 0 ? static_cast<const float*>(c.in.back().data) : nullptr;
}
// The inputs that are tensors of the lists (all but the flag).
size_t list_inputs(const KernelCall& c) { return c.in.size() - (found_inf_of(c) ? 1 : 0); }

// A multi-tensor call's operands: tensor t's input l at in[t * in_per_tensor + l].
struct MultiOperands {
  const KernelCall& c;
  size_t in_per_tensor;
  int64_t count() const { return static_cast<int64_t>(list_inputs(c) / in_per_tensor); }
  float* in(int64_t t, size_t l) const { return static_cast<float*>(c.in[t * in_per_tensor + l].data); }
  int64_t numel(int64_t t) const { return c.in[t * in_per_tensor].numel; }
};

// One factor per tensor, as the float the kernels compute with.
std::vector<float> factor_list(const KernelCall& c, const char* name) {
  const std::vector<double>& d = c.attrs.nums(name);
  return std::vector<float>(d.begin(), d.end());
}

unsigned table_blocks(int64_t chunks) { return static_cast<unsigned>(chunks); }  // < 2^31: tables hold < 2^31 chunks

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

// in: (param, grad, exp_avg, exp_avg_sq) per tensor (the outputs are the
// same tensors); decay, neg_step_size and bc2_sqrt are lists. One launch per
// table of tensors (one for any usual model).
void adamw_update_multi(const KernelCall& c) {
  const MultiOperands ops{c, 4};
  const int dev = c.device.index;
  cudaStream_t stream = current_stream(dev);
  const std::vector<float> decay = factor_list(c, "decay"), neg_step = factor_list(c, "neg_step_size"),
                           bc2_sqrt = factor_list(c, "bc2_sqrt");
  const float w = attr_f(c, "lerp_weight");
  const float* found_inf = found_inf_of(c);
  const auto fill = [&](kernels::AdamWTable& t, int k, int64_t i) {
    for (size_t l = 0; l < 4; ++l) t.ptr[l][k] = ops.in(i, l);
    t.numel[k] = ops.numel(i);
    t.step[k] = kernels::AdamWStep{decay[i], w, attr_f(c, "beta2"), attr_f(c, "one_minus_beta2"), neg_step[i],
                                   bc2_sqrt[i], attr_f(c, "eps")};
  };
  kernels::for_each_table<kernels::AdamWTable>(ops.count(), fill, [&](const kernels::AdamWTable& t, int64_t chunks) {
    if (std::fabs(w) < 0.5f)
      kernels::adamw_update_multi<true><<<table_blocks(chunks), kernels::kOptimThreads, 0, stream>>>(t, found_inf);
    else
      kernels::adamw_update_multi<false><<<table_blocks(chunks), kernels::kOptimThreads, 0, stream>>>(t, found_inf);
    check_launch("adamw_update_multi", dev);
  });
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

// in: (param, grad, [momentum_buffer]) per tensor; weight_decay and first_step are lists.
void sgd_update_multi(const KernelCall& c) {
  const bool with_buffer = c.out.size() * 3 == list_inputs(c) * 2;  // 3 in, 2 out per tensor; else 2 in, 1 out
  const MultiOperands ops{c, with_buffer ? size_t{3} : size_t{2}};
  const float* found_inf = found_inf_of(c);
  const int dev = c.device.index;
  cudaStream_t stream = current_stream(dev);
  const std::vector<float> wd = factor_list(c, "weight_decay"), first = factor_list(c, "first_step");
  const auto fill = [&](kernels::SgdTable& t, int k, int64_t i) {
    t.ptr[0][k] = ops.in(i, 0);
    t.ptr[1][k] = ops.in(i, 1);
    t.ptr[2][k] = with_buffer ? ops.in(i, 2) : nullptr;
    t.numel[k] = ops.numel(i);
    t.step[k] = kernels::SgdStep{-attr_f(c, "lr"), attr_f(c, "momentum"), attr_f(c, "one_minus_dampening"), wd[i],
                                 c.attrs.integer("nesterov") != 0, first[i] != 0.0f};
  };
  kernels::for_each_table<kernels::SgdTable>(ops.count(), fill, [&](const kernels::SgdTable& t, int64_t chunks) {
    kernels::sgd_update_multi<<<table_blocks(chunks), kernels::kOptimThreads, 0, stream>>>(t, found_inf);
    check_launch("sgd_update_multi", dev);
  });
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

// in: (param, grad, exp_avg, exp_avg_sq) per tensor; inv_bc1, inv_bc2 and
// weight_decay are lists. Per table: the chunks' partials, one block per
// tensor for its trust ratio (kept on the device), then the apply pass;
// nothing waits for the device.
void lamb_update_multi(const KernelCall& c) {
  const MultiOperands ops{c, 4};
  const int dev = c.device.index;
  cudaStream_t stream = current_stream(dev);
  const std::vector<float> inv_bc1 = factor_list(c, "inv_bc1"), inv_bc2 = factor_list(c, "inv_bc2"),
                           wd = factor_list(c, "weight_decay");
  int64_t chunks = 0;
  for (int64_t i = 0; i < ops.count(); ++i) chunks += chunks_of(ops.numel(i));
  StoragePtr buf = scratch(c, static_cast<size_t>(2 * chunks) * sizeof(double) + static_cast<size_t>(ops.count()) * sizeof(float));
  double* sums = static_cast<double*>(buf->data());
  float* scales = reinterpret_cast<float*>(sums + 2 * chunks);
  const float* found_inf = found_inf_of(c);
  const auto fill = [&](kernels::LambTable& t, int k, int64_t i) {
    for (size_t l = 0; l < 4; ++l) t.ptr[l][k] = ops.in(i, l);
    t.numel[k] = ops.numel(i);
    t.step[k] = kernels::LambStep{attr_f(c, "beta1"), attr_f(c, "one_minus_beta1"), attr_f(c, "beta2"),
                                  attr_f(c, "one_minus_beta2"), inv_bc1[i], inv_bc2[i], attr_f(c, "eps"), wd[i],
                                  attr_f(c, "lr")};
  };
  kernels::for_each_table<kernels::LambTable>(ops.count(), fill, [&](const kernels::LambTable& t, int64_t table_chunks) {
    kernels::lamb_moments_multi<<<table_blocks(table_chunks), kernels::kOptimThreads, 0, stream>>>(t, sums, found_inf);
    check_launch("lamb_update_multi", dev);
    kernels::lamb_trust_ratio_multi<<<static_cast<unsigned>(t.count), kernels::kOptimThreads, 0, stream>>>(t, sums, scales, found_inf);
    check_launch("lamb_update_multi", dev);
    kernels::lamb_apply_multi<<<table_blocks(table_chunks), kernels::kOptimThreads, 0, stream>>>(t, scales, found_inf);
    check_launch("lamb_update_multi", dev);
  });
}

// in: grads..., found_inf; out: the same tensors. Every gradient *= inv_scale
// and found_inf = 1 if any held inf or NaN: one launch per table of tensors.
void unscale_grads(const KernelCall& c) {
  const int64_t count = static_cast<int64_t>(c.in.size()) - 1;
  const int dev = c.device.index;
  cudaStream_t stream = current_stream(dev);
  float* found_inf = out_f(c, c.out.size() - 1);
  const float inv_scale = attr_f(c, "inv_scale");
  const auto fill = [&](kernels::UnscaleTable& t, int k, int64_t i) {
    t.ptr[0][k] = out_f(c, static_cast<size_t>(i));
    t.numel[k] = c.out[i].numel;
  };
  kernels::for_each_table<kernels::UnscaleTable>(count, fill, [&](const kernels::UnscaleTable& t, int64_t chunks) {
    kernels::unscale_multi<<<table_blocks(chunks), kernels::kOptimThreads, 0, stream>>>(t, inv_scale, found_inf);
    check_launch("unscale_grads", dev);
  });
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
VL_REGISTER_KERNEL(adamw_update_multi, CUDA, adamw_update_multi);
VL_REGISTER_KERNEL(sgd_update_multi, CUDA, sgd_update_multi);
VL_REGISTER_KERNEL(lamb_update_multi, CUDA, lamb_update_multi);
VL_REGISTER_KERNEL(unscale_grads, CUDA, unscale_grads);
VL_REGISTER_KERNEL(sum_of_squares, CUDA, sum_of_squares);
VL_REGISTER_KERNEL(scale_inplace, CUDA, scale_inplace);
VL_REGISTER_KERNEL(add_inplace, CUDA, add_inplace);
VL_REGISTER_KERNEL(lerp_inplace, CUDA, lerp_inplace);

}  // namespace cuda
}  // namespace vl
