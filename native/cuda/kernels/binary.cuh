// Binary elementwise kernels (as cpu/elementwise.cc): the launcher gives both
// inputs the output's shape (stride 0 along broadcast dims). Integer division
// by zero cannot throw in a kernel: it sets *div_by_zero and writes 0, and the
// launcher reports it. Kernel source shared by nvcc and the SIMT runner.
#pragma once
#include <cstdint>
#include <type_traits>

#include "cuda/element.cuh"

namespace vl {
namespace cuda {
namespace kernels {

enum class BinaryOp { Add, Sub, Mul, Div };

template <BinaryOp op, typename C>
VL_DEVICE C apply(C a, C b, int* div_by_zero) {
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

template <BinaryOp op, typename T>
VL_GLOBAL void binary_kernel(TensorArg a, TensorArg b, T* out, int64_t n, int* div_by_zero) {
  using E = Elem<T>;
  const T* pa = static_cast<const T*>(a.data);
  const T* pb = static_cast<const T*>(b.data);
  VL_GRID_STRIDE(i, n) out[i] = E::store(apply<op>(E::load(pa[offset_of(a, i)]), E::load(pb[offset_of(b, i)]), div_by_zero));
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
