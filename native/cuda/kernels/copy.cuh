// copy: strided input -> contiguous output, converting the dtype with the
// rules of element.cuh (as cpu/copy.cc). Kernel source shared by nvcc and the
// SIMT runner.
#pragma once
#include "cuda/element.cuh"

namespace vl {
namespace cuda {
namespace kernels {

template <typename S, typename D>
VL_GLOBAL void copy_kernel(TensorArg in, D* out, int64_t n) {
  const S* src = static_cast<const S*>(in.data);
  VL_GRID_STRIDE(i, n) out[i] = convert<D>(src[offset_of(in, i)]);
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
