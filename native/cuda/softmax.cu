// softmax on CUDA (as cpu/activation.cc): x [rows, n] contiguous f32 -> y, and
// the row log-sum-exp when asked. The kernel is cuda/kernels/softmax.cuh, which
// the test suite runs through the SIMT runner against a reference.
#include <climits>

#include "core/dispatch.h"
#include "core/error.h"
#include "cuda/cuda_check.cuh"
#include "cuda/kernels/softmax.cuh"
#include "cuda/runtime.cuh"

namespace vl {
namespace cuda {
namespace {

constexpr int kSoftmaxThreads = 128;

void softmax(const KernelCall& c) {
  const TensorArg& x = c.in[0];
  const int64_t n = x.shape[x.ndim - 1], rows = n ? x.numel / n : 0;
  VL_CHECK(n <= INT_MAX && rows <= INT_MAX, ErrorCode::Shape, "softmax: rows of up to ", INT_MAX,
           " values and up to ", INT_MAX, " rows on CUDA, got ", rows, " rows of ", n);
  const int dev = c.device.index;
  float* lse = c.out.size() > 1 ? static_cast<float*>(c.out[1].data) : nullptr;
  kernels::softmax_rows<kSoftmaxThreads><<<static_cast<unsigned>(rows), kSoftmaxThreads, 0, current_stream(dev)>>>(
      static_cast<const float*>(x.data), static_cast<float*>(c.out[0].data), lse, static_cast<int>(n));
  check_launch("softmax_rows", dev);
}

}  // namespace

VL_REGISTER_KERNEL(softmax, CUDA, softmax);

}  // namespace cuda
}  // namespace vl
