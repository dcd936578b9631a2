// sum over trailing dimensions. The launcher permutes the reduced dims to the
// end, so input is [outer..., inner...] and output is [outer] (contiguous).
// Partial sums use fixed chunks combined in a fixed order: the result does
// not depend on the number of threads.
#include <vector>

#include "core/dispatch.h"
#include "core/thread_pool.h"
#include "cpu/element.h"
#include "cpu/simd/isa.h"

namespace vl {
namespace cpu {
namespace {

constexpr int64_t kSumChunk = 1 << 14;

template <typename T>
typename Elem<T>::Compute sum_range(const TensorArg& in, const T* src, int64_t begin, int64_t end) {
  using C = typename Elem<T>::Compute;
  if constexpr (std::is_same<T, float>::value) {
    if (in.contiguous) return isa_kernels().sum_f32(src + begin, end - begin);
  }
  C acc = 0;
  for_each_offset(in, begin, end, [&](int64_t, int64_t off) { acc += Elem<T>::load(src[off]); });
  return acc;
}

void sum(const KernelCall& c) {
  const TensorArg& in = c.in[0];
  const TensorArg& out = c.out[0];
  const int64_t outer = out.numel;
  const int64_t inner = outer ? in.numel / outer : 0;
  dispatch_dtype(in.dtype, [&](auto itag) {
    using T = decltype(itag);
    using C = typename Elem<T>::Compute;
    const T* src = static_cast<const T*>(in.data);
    auto write = [&](int64_t o, C value) {
      dispatch_dtype(out.dtype, [&](auto otag) {
        using O = decltype(otag);
        static_cast<O*>(out.data)[o] = Elem<O>::store(static_cast<typename Elem<O>::Compute>(value));
      });
    };
    if (outer >= 2 * num_threads() || inner <= kSumChunk) {
      parallel_for(outer, std::max<int64_t>(1, kSumChunk / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
        for (int64_t o = b; o < e; ++o) {
          C acc = 0;
          for (int64_t s = 0; s < inner; s += kSumChunk)
            acc += sum_range(in, src, o * inner + s, o * inner + std::min(inner, s + kSumChunk));
          write(o, acc);
        }
      });
      return;
    }
    // Few outputs, long rows: split each row into chunks across threads.
    const int64_t chunks = (inner + kSumChunk - 1) / kSumChunk;
    std::vector<C> partial(static_cast<size_t>(outer * chunks));
    parallel_for(outer * chunks, 1, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        const int64_t o = k / chunks, s = (k % chunks) * kSumChunk;
        partial[k] = sum_range(in, src, o * inner + s, o * inner + std::min(inner, s + kSumChunk));
      }
    });
    for (int64_t o = 0; o < outer; ++o) {
      C acc = 0;
      for (int64_t k = 0; k < chunks; ++k) acc += partial[o * chunks + k];
      write(o, acc);
    }
  });
}

}  // namespace

VL_REGISTER_KERNEL(sum, CPU, sum);

}  // namespace cpu
}  // namespace vl
