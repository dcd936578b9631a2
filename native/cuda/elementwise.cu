// Binary elementwise ops (as cpu/elementwise.cc). The launcher gives both
// inputs the output's shape (stride 0 along broadcast dims).
#include <type_traits>

#include "core/dispatch.h"
#include "cuda/cuda_check.cuh"
#include "cuda/kernels/binary.cuh"
#include "cuda/runtime.cuh"

namespace vl {
namespace cuda {
namespace {

using kernels::BinaryOp;
using kernels::binary_kernel;

template <BinaryOp op>
constexpr const char* op_name() {
  return op == BinaryOp::Add ? "add" : op == BinaryOp::Sub ? "sub" : op == BinaryOp::Mul ? "mul" : "div";
}

template <BinaryOp op>
void binary(const KernelCall& c) {
  const TensorArg &a = c.in[0], &b = c.in[1], &out = c.out[0];
  const int dev = c.device.index;
  const cudaStream_t stream = current_stream(dev);
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    constexpr bool checked = op == BinaryOp::Div && !is_float_compute<T>;
    int* flag = checked ? error_flag(dev) : nullptr;
    if (checked) VL_CUDA_CHECK(cudaMemsetAsync(flag, 0, sizeof(int), stream), dev);
    binary_kernel<op, T><<<grid_for(out.numel), kBlock, 0, stream>>>(a, b, static_cast<T*>(out.data), out.numel, flag);
    check_launch(op_name<op>(), dev);
    if (checked) {
      // Only integer division waits for the device, to report division by zero like the CPU.
      int host_flag = 0;
      VL_CUDA_CHECK(cudaMemcpyAsync(&host_flag, flag, sizeof(int), cudaMemcpyDeviceToHost, stream), dev);
      VL_CUDA_CHECK(cudaStreamSynchronize(stream), dev);
      if (host_flag) fail(ErrorCode::Argument, "div: integer division by zero");
    }
  });
}

}  // namespace

VL_REGISTER_KERNEL(add, CUDA, binary<BinaryOp::Add>);
VL_REGISTER_KERNEL(sub, CUDA, binary<BinaryOp::Sub>);
VL_REGISTER_KERNEL(mul, CUDA, binary<BinaryOp::Mul>);
VL_REGISTER_KERNEL(div, CUDA, binary<BinaryOp::Div>);

}  // namespace cuda
}  // namespace vl
