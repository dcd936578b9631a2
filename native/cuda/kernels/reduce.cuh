// sum over trailing dimensions (as cpu/reduce.cc): input [outer..., inner...]
// (the launcher permutes the reduced dims to the end), output [outer]. Floats
// accumulate in f32, ints in int64; the order of additions depends only on the
// shape (fixed block size, chunking and tree). Kernel source shared by nvcc
// and the SIMT runner; blocks are kBlock threads.
#pragma once
#include "cuda/element.cuh"

namespace vl {
namespace cuda {
namespace kernels {

// Rows up to this long are summed by one thread each.
constexpr int64_t kThreadRow = 32;
// Longer rows are split into chunks of this many elements, one block each,
// then the per-chunk partial sums are added in a second pass.
constexpr int64_t kChunk = 16384;

template <typename T, typename O>
VL_GLOBAL void sum_thread_rows(TensorArg in, O* out, int64_t outer, int64_t inner) {
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
VL_GLOBAL void sum_block_chunks(TensorArg in, O* out, int64_t tasks, int64_t inner, int64_t chunk, int64_t chunks) {
  using A = typename Elem<T>::Compute;
  VL_SHARED A partial[kBlock];
  const T* src = static_cast<const T*>(in.data);
  for (int64_t t = simt::block_x(); t < tasks; t += simt::grid_dim_x()) {
    const int64_t row = t / chunks, k = t % chunks;
    const int64_t begin = row * inner + k * chunk;
    const int64_t end = row * inner + ((k + 1) * chunk < inner ? (k + 1) * chunk : inner);
    A acc = 0;
    for (int64_t j = begin + simt::thread_x(); j < end; j += simt::block_dim_x()) acc += Elem<T>::load(src[offset_of(in, j)]);
    partial[simt::thread_x()] = acc;
    simt::sync_threads();
    for (int s = simt::block_dim_x() / 2; s > 0; s >>= 1) {
      if (simt::thread_x() < s) partial[simt::thread_x()] += partial[simt::thread_x() + s];
      simt::sync_threads();
    }
    if (simt::thread_x() == 0) out[t] = store_as<O>(partial[0]);
    simt::sync_threads();  // partial[] is reused by the next task
  }
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
