// Software prefetch for the attention kernels' strided row walks: q, k and v
// rows sit one qkv row apart (several KiB), a stride the hardware prefetcher
// picks up late, and a tile's setup stalls on every row without it.
#pragma once

#include <cstdint>

namespace vl {

// Rows ahead of the one being read.
constexpr int64_t kPrefetchRows = 4;

inline void prefetch_row(const float* p, int64_t D) {
  for (int64_t d = 0; d < D; d += 16) __builtin_prefetch(p + d, 0, 3);
}

}  // namespace vl
