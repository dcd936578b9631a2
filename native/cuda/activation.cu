// SiLU, GELU and the SwiGLU gate with their gradients on CUDA, with the
// contracts of cpu/activation.cc (f32, contiguous). Kernels:
// cuda/kernels/activation.cuh, which the test suite runs through the SIMT
// runner against references.
#include <algorithm>

#include "core/dispatch.h"
#include "cuda/cuda_check.cuh"
#include "cuda/kernels/activation.cuh"
#include "cuda/runtime.cuh"

namespace vl {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// Grid-stride kernels: enough blocks to fill the device, never more than the data needs.
unsigned blocks_for(int64_t n) { return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 8192)); }

const float* in_f32(const KernelCall& c, size_t i) { return static_cast<const float*>(c.in[i].data); }
float* out_f32(const KernelCall& c) { return static_cast<float*>(c.out[0].data); }

template <kernels::Act kAct>
void forward(const KernelCall& c) {
  const int64_t n = c.out[0].numel;
  const int dev = c.device.index;
  kernels::activation_forward<kAct><<<blocks_for(n), kThreads, 0, current_stream(dev)>>>(in_f32(c, 0), out_f32(c), n);
  check_launch("activation_forward", dev);
}

// in: dy, x; out: dx
template <kernels::Act kAct>
void backward(const KernelCall& c) {
  const int64_t n = c.out[0].numel;
  const int dev = c.device.index;
  kernels::activation_backward<kAct><<<blocks_for(n), kThreads, 0, current_stream(dev)>>>(in_f32(c, 0), in_f32(c, 1),
                                                                                          out_f32(c), n);
  check_launch("activation_backward", dev);
}

// in: a [rows, 2H]; out: h [rows, H]
void swiglu_gate(const KernelCall& c) {
  const TensorArg& h = c.out[0];
  const int64_t H = h.shape[h.ndim - 1], rows = H ? h.numel / H : 0;
  const int dev = c.device.index;
  kernels::swiglu_gate_forward<<<blocks_for(h.numel), kThreads, 0, current_stream(dev)>>>(in_f32(c, 0), out_f32(c), rows,
                                                                                          H);
  check_launch("swiglu_gate_forward", dev);
}

// in: dh [rows, H], a [rows, 2H]; out: da [rows, 2H]
void swiglu_gate_backward(const KernelCall& c) {
  const TensorArg& dh = c.in[0];
  const int64_t H = dh.shape[dh.ndim - 1], rows = H ? dh.numel / H : 0;
  const int dev = c.device.index;
  kernels::swiglu_gate_backward<<<blocks_for(dh.numel), kThreads, 0, current_stream(dev)>>>(in_f32(c, 0), in_f32(c, 1),
                                                                                           out_f32(c), rows, H);
  check_launch("swiglu_gate_backward", dev);
}

}  // namespace

VL_REGISTER_KERNEL(silu, CUDA, forward<kernels::Act::Silu>);
VL_REGISTER_KERNEL(gelu, CUDA, forward<kernels::Act::Gelu>);
VL_REGISTER_KERNEL(silu_backward, CUDA, backward<kernels::Act::Silu>);
VL_REGISTER_KERNEL(gelu_backward, CUDA, backward<kernels::Act::Gelu>);
VL_REGISTER_KERNEL(swiglu_gate, CUDA, swiglu_gate);
VL_REGISTER_KERNEL(swiglu_gate_backward, CUDA, swiglu_gate_backward);

}  // namespace cuda
}  // namespace vl
