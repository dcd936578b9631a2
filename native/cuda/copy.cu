// copy: strided input -> contiguous output, converting the dtype (as
// cpu/copy.cc); copy_into a strided output view; window partition / merge (as
// cpu/window.cc). Kernels: cuda/kernels/copy.cuh, run by the test suite
// through the SIMT runner.
#include <cstdint>

#include "core/dispatch.h"
#include "core/error.h"
#include "cuda/cuda_check.cuh"
#include "cuda/kernels/copy.cuh"
#include "cuda/runtime.cuh"

namespace vl {
namespace cuda {
namespace {

using kernels::copy_kernel;

// Element sizes the window kernels move (any dtype of that size: bits are copied).
template <typename F>
void by_element_size(size_t bytes, const char* op, F f) {
  switch (bytes) {
    case 1: return f(uint8_t{});
    case 2: return f(uint16_t{});
    case 4: return f(uint32_t{});
    case 8: return f(uint64_t{});
    default: fail(ErrorCode::DType, op, ": elements of ", bytes, " bytes are not supported on CUDA");
  }
}

void copy(const KernelCall& c) {
  const TensorArg& in = c.in[0];
  const TensorArg& out = c.out[0];
  const int dev = c.device.index;
  const cudaStream_t stream = current_stream(dev);
  if (in.dtype == out.dtype && in.contiguous) {
    VL_CUDA_CHECK(cudaMemcpyAsync(out.data, in.data, static_cast<size_t>(out.numel) * dtype_size(out.dtype),
                                  cudaMemcpyDeviceToDevice, stream),
                  dev);
    return;
  }
  dispatch_dtype(in.dtype, [&](auto stag) {
    using S = decltype(stag);
    dispatch_dtype(out.dtype, [&](auto dtag) {
      using D = decltype(dtag);
      copy_kernel<S, D><<<grid_for(out.numel), kBlock, 0, stream>>>(in, static_cast<D*>(out.data), out.numel);
      check_launch("copy", dev);
    });
  });
}

void copy_into(const KernelCall& c) {
  const TensorArg& in = c.in[0];
  const TensorArg& out = c.out[0];
  if (out.contiguous) return copy(c);
  const int dev = c.device.index;
  dispatch_dtype(in.dtype, [&](auto stag) {
    using S = decltype(stag);
    dispatch_dtype(out.dtype, [&](auto dtag) {
      using D = decltype(dtag);
      kernels::copy_into_kernel<S, D><<<grid_for(out.numel), kBlock, 0, current_stream(dev)>>>(in, out, out.numel);
      check_launch("copy_into", dev);
    });
  });
}

kernels::WindowShape window_shape(const Attrs& a) {
  kernels::WindowShape g{a.integer("batch"), a.integer("height"), a.integer("width"), a.integer("channels"),
                         a.integer("window"), 0, 0};
  g.nh = (g.H + g.ws - 1) / g.ws;
  g.nw = (g.W + g.ws - 1) / g.ws;
  return g;
}

// in: x [B, H*W, C] contiguous; out: [B*nh*nw, ws*ws, C]
void window_partition(const KernelCall& c) {
  const kernels::WindowShape g = window_shape(c.attrs);
  const int dev = c.device.index;
  by_element_size(dtype_size(c.in[0].dtype), "window_partition", [&](auto tag) {
    using T = decltype(tag);
    kernels::window_partition_kernel<T><<<grid_for(c.out[0].numel), kBlock, 0, current_stream(dev)>>>(
        static_cast<const T*>(c.in[0].data), static_cast<T*>(c.out[0].data), g);
    check_launch("window_partition", dev);
  });
}

// in: [B*nh*nw, ws*ws, C] contiguous; out: [B, H*W, C]
void window_merge(const KernelCall& c) {
  const kernels::WindowShape g = window_shape(c.attrs);
  const int dev = c.device.index;
  by_element_size(dtype_size(c.in[0].dtype), "window_merge", [&](auto tag) {
    using T = decltype(tag);
    kernels::window_merge_kernel<T><<<grid_for(c.out[0].numel), kBlock, 0, current_stream(dev)>>>(
        static_cast<const T*>(c.in[0].data), static_cast<T*>(c.out[0].data), g);
    check_launch("window_merge", dev);
  });
}

}  // namespace

VL_REGISTER_KERNEL(copy, CUDA, copy);
VL_REGISTER_KERNEL(copy_into, CUDA, copy_into);
VL_REGISTER_KERNEL(window_partition, CUDA, window_partition);
VL_REGISTER_KERNEL(window_merge, CUDA, window_merge);

}  // namespace cuda
}  // namespace vl
