// Binary elementwise ops (as cpu/elementwise.cc). The launcher gives both
// inputs the output's shape (stride 0 along broadcast dims).
#include <type_traits>

#include "core/dispatch.h"
#include "cuda/cuda_check.cuh"
#include "cuda/element.cuh"
#include "cuda/runtime.cuh"

namespace vl {
namespace cuda {
namespace {

enum class BinaryOp { Add, Sub, Mul, Div };

template <BinaryOp op, typename C>
__device__ __forceinline__ C apply(C a, C b, int* div_by_zero) {
  if constexpr (std::is_integral<C>::value) {
    // Through uint64 so overflow wraps (defined) the way the CPU's int64 math does in practice.
    const uint64_t ua = static_cast<uint64_t>(a), ub = static_cast<uint64_t>(b);
    if constexpr (op == BinaryOp::Add) return static_cast<C>(ua + ub);
    if constexpr (op == BinaryOp::Sub) return static_cast<C>(ua - ub);
    if constexpr (op == BinaryOp::Mul) return static_cast<C>(ua * ub);
    if constexpr (op == BinaryOp::Div) {
      // A kernel cannot throw: flag it and write 0; the host turns the flag into an error.
      if (b == 0) {
        *div_by_zero = 1;
        return 0;
      }
      if (b == -1) return static_cast<C>(uint64_t(0) - ua);  // INT64_MIN / -1 wraps instead of trapping
      return a / b;
    }
  } else {
    if constexpr (op == BinaryOp::Add) return a + b;
    if constexpr (op == BinaryOp::Sub) return a - b;
    if constexpr (op == BinaryOp::Mul) return a * b;
    if constexpr (op == BinaryOp::Div) return a / b;  // IEEE division (nvcc's default -prec-div=true)
  }
}

template <BinaryOp op>
constexpr const char* op_name() {
  return op == BinaryOp::Add ? "add" : op == BinaryOp::Sub ? "sub" : op == BinaryOp::Mul ? "mul" : "div";
}

template <BinaryOp op, typename T>
__global__ void binary_kernel(TensorArg a, TensorArg b, T* out, int64_t n, int* div_by_zero) {
  using E = Elem<T>;
  const T* pa = static_cast<const T*>(a.data);
  const T* pb = static_cast<const T*>(b.data);
  VL_GRID_STRIDE(i, n) out[i] = E::store(apply<op>(E::load(pa[offset_of(a, i)]), E::load(pb[offset_of(b, i)]), div_by_zero));
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
