// sum over trailing dimensions. The launcher permutes the reduced dims to the
// end, so input is [outer..., inner...] and output is [outer] (contiguous).
// Partial sums use fixed chunks combined in a fixed order: the result does
// not depend on the number of threads.
#include <algorithm>
#include <type_traits>
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

// Column sums: the kept dims end in a row-major block of `width` elements
// with unit stride ([R, C] -> [C], [B, N, C] -> [C], or [G, R, C] -> [G, C]
// with the group dims in front), so each reduced index is a row of `width`
// contiguous elements, summed with vector adds instead of one strided walk
// per output. Rows are cut into chunks that depend on the shape only; each
// chunk sums its rows in order into float (int64 for ints) partials, and the
// partials are added in chunk order in double: the same bits for any thread
// count, and float runs of at most kMaxChunkRows adds per column.
struct ColumnPlan {
  int nk = 0;         // kept dims [0, nk) of the input view, reduced dims [nk, ndim)
  int split = 0;      // kept dims [split, nk) form the contiguous block
  int64_t groups = 1, width = 1, rows = 1;
};

bool plan_columns(const TensorArg& in, int nk, ColumnPlan& p) {
  if (in.contiguous || nk == 0) return false;
  int d = nk;
  int64_t expect = 1;
  while (d > 0 && (in.shape[d - 1] == 1 || in.strides[d - 1] == expect)) {
    expect *= in.shape[d - 1];
    --d;
  }
  p.nk = nk;
  p.split = d;
  p.width = expect;
  if (p.width < 2) return false;
  for (int i = 0; i < d; ++i) p.groups *= in.shape[i];
  p.rows = in.numel / (p.groups * p.width);
  return true;
}

// Offset of flat index i through dims [d0, d1) of t.
int64_t dims_offset(const TensorArg& t, int d0, int d1, int64_t i) {
  int64_t off = 0;
  for (int d = d1 - 1; d >= d0; --d) {
    off += (i % t.shape[d]) * t.strides[d];
    i /= t.shape[d];
  }
  return off;
}

// Row offsets (reduced dims) for rows [r0, r0 + n), walked incrementally.
void row_offsets(const TensorArg& t, int d0, int64_t r0, int64_t n, int64_t* off) {
  int64_t idx[kMaxDims] = {};
  int64_t o = 0, rem = r0;
  for (int d = t.ndim - 1; d >= d0; --d) {
    idx[d] = rem % t.shape[d];
    rem /= t.shape[d];
    o += idx[d] * t.strides[d];
  }
  for (int64_t i = 0; i < n; ++i) {
    off[i] = o;
    for (int d = t.ndim - 1; d >= d0; --d) {
      o += t.strides[d];
      if (++idx[d] < t.shape[d]) break;
      o -= idx[d] * t.strides[d];
      idx[d] = 0;
    }
  }
}

constexpr int64_t kColBlock = 2048;      // columns per task
constexpr int64_t kMaxChunkRows = 2048;  // longest float run per column
constexpr int64_t kTargetChunks = 64;

void column_sum(const TensorArg& in, const TensorArg& out, const ColumnPlan& p) {
  const int64_t W = p.width, R = p.rows, G = p.groups;
  // About kTargetChunks chunks of at least 4096 elements, at most kMaxChunkRows rows.
  const int64_t min_rows = std::max<int64_t>(1, 4096 / W);
  const int64_t chunk_rows =
      std::min(kMaxChunkRows, std::max(min_rows, (R + kTargetChunks - 1) / kTargetChunks));
  const int64_t nchunks = (R + chunk_rows - 1) / chunk_rows;
  const int64_t ncb = (W + kColBlock - 1) / kColBlock;
  dispatch_dtype(in.dtype, [&](auto itag) {
    using T = decltype(itag);
    using C = typename Elem<T>::Compute;
    using Acc = typename std::conditional<std::is_same<C, float>::value, double, int64_t>::type;
    const T* src = static_cast<const T*>(in.data);
    std::vector<C> partial(static_cast<size_t>(G * nchunks * W));
    // Which thread sums which chunk does not matter; tasks are batched only
    // so that many tiny ones (small groups) are not scheduled one by one.
    const int64_t task_elems = std::min(chunk_rows, R) * std::min(kColBlock, W);
    parallel_for(G * ncb * nchunks, std::max<int64_t>(1, kSumChunk / task_elems), [&](int64_t t0, int64_t t1) {
      std::vector<int64_t> off(static_cast<size_t>(chunk_rows));
      std::vector<const float*> ptrs;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t g = t / (ncb * nchunks), cb = (t / nchunks) % ncb, ch = t % nchunks;
        const int64_t r0 = ch * chunk_rows, n = std::min(chunk_rows, R - r0);
        const int64_t c0 = cb * kColBlock, cw = std::min(kColBlock, W - c0);
        const T* base = src + dims_offset(in, 0, p.split, g) + c0;
        row_offsets(in, p.nk, r0, n, off.data());
        C* acc = partial.data() + (g * nchunks + ch) * W + c0;
        std::fill(acc, acc + cw, C(0));
        if constexpr (std::is_same<T, float>::value) {
          ptrs.resize(static_cast<size_t>(n));
          for (int64_t i = 0; i < n; ++i) ptrs[i] = base + off[i];
          isa_kernels().col_sum_f32(ptrs.data(), n, cw, acc);
        } else {
          for (int64_t i = 0; i < n; ++i) {
            const T* row = base + off[i];
            for (int64_t j = 0; j < cw; ++j) acc[j] += Elem<T>::load(row[j]);
          }
        }
      }
    });
    // Chunks in order, per output element; outputs split by column blocks.
    const int64_t out_elems = nchunks * std::min(kColBlock, W);
    parallel_for(G * ncb, std::max<int64_t>(1, kSumChunk / out_elems), [&](int64_t t0, int64_t t1) {
      std::vector<Acc> tot;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t g = t / ncb, c0 = (t % ncb) * kColBlock, cw = std::min(kColBlock, W - c0);
        tot.assign(static_cast<size_t>(cw), Acc(0));
        for (int64_t ch = 0; ch < nchunks; ++ch) {
          const C* part = partial.data() + (g * nchunks + ch) * W + c0;
          for (int64_t j = 0; j < cw; ++j) tot[j] += static_cast<Acc>(part[j]);
        }
        dispatch_dtype(out.dtype, [&](auto otag) {
          using O = decltype(otag);
          using OC = typename Elem<O>::Compute;
          O* dst = static_cast<O*>(out.data) + g * W + c0;
          for (int64_t j = 0; j < cw; ++j) dst[j] = Elem<O>::store(static_cast<OC>(static_cast<C>(tot[j])));
        });
      }
    });
  });
}

void sum(const KernelCall& c) {
  const TensorArg& in = c.in[0];
  const TensorArg& out = c.out[0];
  ColumnPlan plan;
  if (plan_columns(in, out.ndim, plan)) return column_sum(in, out, plan);
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
