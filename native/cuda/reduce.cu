// sum over trailing dimensions (as cpu/reduce.cc): the launcher permutes the
// reduced dims to the end, so input is [outer..., inner...] and output is
// [outer] (contiguous). Floats accumulate in f32, ints in int64. The order of
// additions depends only on the shape (fixed block size, fixed chunking and a
// fixed tree), so results are deterministic run to run.
#include <type_traits>

#include "core/backend.h"
#include "core/dispatch.h"
#include "cuda/cuda_check.cuh"
#include "cuda/kernels/reduce.cuh"
#include "cuda/runtime.cuh"

namespace vl {
namespace cuda {
namespace {

using kernels::kChunk;
using kernels::kThreadRow;
using kernels::sum_block_chunks;
using kernels::sum_thread_rows;

inline unsigned int blocks_for(int64_t tasks) {
  return static_cast<unsigned int>(tasks < (int64_t(1) << 20) ? tasks : (int64_t(1) << 20));
}

void sum(const KernelCall& c) {
  const TensorArg& in = c.in[0];
  const TensorArg& out = c.out[0];
  const int64_t outer = out.numel;
  const int64_t inner = outer ? in.numel / outer : 0;
  const int dev = c.device.index;
  const cudaStream_t stream = current_stream(dev);
  dispatch_dtype(in.dtype, [&](auto itag) {
    using T = decltype(itag);
    using A = typename Elem<T>::Compute;
    // Floats keep their dtype, ints give i64 (what ops/reduce.cc allocates).
    using O = std::conditional_t<is_float_compute<T>, T, int64_t>;
    const DType want = is_float_compute<T> ? in.dtype : DType::I64;
    VL_CHECK(out.dtype == want, ErrorCode::DType, "sum: expected a ", dtype_name(want), " output for a ",
             dtype_name(in.dtype), " input, got ", dtype_name(out.dtype));
    O* dst = static_cast<O*>(out.data);
    if (inner <= kThreadRow) {
      sum_thread_rows<T, O><<<grid_for(outer), kBlock, 0, stream>>>(in, dst, outer, inner);
      check_launch("sum", dev);
      return;
    }
    if (inner <= kChunk) {
      sum_block_chunks<T, O><<<blocks_for(outer), kBlock, 0, stream>>>(in, dst, outer, inner, inner, 1);
      check_launch("sum", dev);
      return;
    }
    const int64_t chunks = (inner + kChunk - 1) / kChunk;
    const int64_t tasks = outer * chunks;
    // Scratch from the device allocator: handing it back right after queuing
    // is safe because everything on this device runs in stream order.
    StoragePtr scratch = backend_for(c.device).allocate(c.device, static_cast<size_t>(tasks) * sizeof(A));
    A* part = static_cast<A*>(scratch->data());
    sum_block_chunks<T, A><<<blocks_for(tasks), kBlock, 0, stream>>>(in, part, tasks, inner, kChunk, chunks);
    check_launch("sum", dev);
    TensorArg p{};
    p.data = part;
    p.dtype = is_float_compute<T> ? DType::F32 : DType::I64;
    p.ndim = 1;
    p.numel = tasks;
    p.contiguous = true;
    p.shape[0] = tasks;
    p.strides[0] = 1;
    sum_block_chunks<A, O><<<blocks_for(outer), kBlock, 0, stream>>>(p, dst, outer, chunks, chunks, 1);
    check_launch("sum", dev);
  });
}

}  // namespace

VL_REGISTER_KERNEL(sum, CUDA, sum);

}  // namespace cuda
}  // namespace vl
