// sum over trailing dimensions (as cpu/reduce.cc): the launcher permutes the
// reduced dims to the end, so input is [outer..., inner...] and output is
// [outer] (contiguous). Floats accumulate in f32, ints in int64. The order of
// additions depends only on the shape (fixed block size, fixed chunking and a
// fixed tree), so results are deterministic run to run.
#include <type_traits>

#include "core/backend.h"
#include "core/dispatch.h"
#include "cuda/cuda_check.cuh"
#include "cuda/element.cuh"
#include "cuda/runtime.cuh"

namespace vl {
namespace cuda {
namespace {

// Rows up to this long are summed by one thread each.
constexpr int64_t kThreadRow = 32;
// Longer rows are split into chunks of this many elements, one block each,
// then the per-chunk partial sums are added in a second pass.
constexpr int64_t kChunk = 16384;

template <typename T, typename O>
__global__ void sum_thread_rows(TensorArg in, O* out, int64_t outer, int64_t inner) {
  using A = typename Elem<T>::Compute;
  const T* src = static_cast<const T*>(in.data);
  VL_GRID_STRIDE(o, outer) {
    A acc = 0;
    for (int64_t j = o * inner; j < (o + 1) * inner; ++j) acc += Elem<T>::load(src[offset_of(in, j)]);
    out[o] = store_as<O>(acc);
  }
}

// Task t = (row t / chunks, chunk t % chunks): out[t] = sum of that chunk of the row.
template <typename T, typename O>
__global__ void sum_block_chunks(TensorArg in, O* out, int64_t tasks, int64_t inner, int64_t chunk, int64_t chunks) {
  using A = typename Elem<T>::Compute;
  __shared__ A partial[kBlock];
  const T* src = static_cast<const T*>(in.data);
  for (int64_t t = blockIdx.x; t < tasks; t += gridDim.x) {
    const int64_t row = t / chunks, k = t % chunks;
    const int64_t begin = row * inner + k * chunk;
    const int64_t end = row * inner + ((k + 1) * chunk < inner ? (k + 1) * chunk : inner);
    A acc = 0;
    for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) acc += Elem<T>::load(src[offset_of(in, j)]);
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
      __syncthreads();
    }
    if (threadIdx.x == 0) out[t] = store_as<O>(partial[0]);
    __syncthreads();  // partial[] is reused by the next task
  }
}

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
