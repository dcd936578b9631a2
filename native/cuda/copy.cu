// copy: strided input -> contiguous output, converting the dtype (as cpu/copy.cc).
#include "core/dispatch.h"
#include "cuda/cuda_check.cuh"
#include "cuda/kernels/copy.cuh"
#include "cuda/runtime.cuh"

namespace vl {
namespace cuda {
namespace {

using kernels::copy_kernel;

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

}  // namespace

VL_REGISTER_KERNEL(copy, CUDA, copy);

}  // namespace cuda
}  // namespace vl
