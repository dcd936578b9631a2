// Pieces the per-ISA kernel files (kernels_{scalar,avx2,avx512}.cc) share.
// Internal linkage only: each file compiles its own copy with its own
// instruction-set flags (see isa.h for why nothing may be shared across them).
#pragma once
#include <cstdint>
#include <type_traits>

#include "cpu/simd/isa.h"

namespace vl {
namespace {

// a op b for op in kBinaryAdd..kBinaryDiv.
template <int op>
inline float binary_element(float a, float b) {
  return op == kBinaryAdd ? a + b : op == kBinarySub ? a - b : op == kBinaryMul ? a * b : a / b;
}

// Calls f(op, s_first) with both as compile-time constants, so each
// combination of binary_scalar gets its own branch-free loop.
template <typename F>
inline void with_binary_scalar(int op, int s_first, F&& f) {
  const auto go = [&](auto op_c) {
    if (s_first)
      f(op_c, std::true_type{});
    else
      f(op_c, std::false_type{});
  };
  switch (op) {
    case kBinaryAdd: return go(std::integral_constant<int, kBinaryAdd>{});
    case kBinarySub: return go(std::integral_constant<int, kBinarySub>{});
    case kBinaryMul: return go(std::integral_constant<int, kBinaryMul>{});
    default: return go(std::integral_constant<int, kBinaryDiv>{});
  }
}

// dst[i][j] = src[j][i] outside the whole blocks the vector code transposed:
// rows i >= mb, then columns j >= nb (mb = nb = 0: the whole matrix).
inline void transpose32_edges(const uint32_t* src, int64_t lds, uint32_t* dst, int64_t ldd, int64_t m, int64_t n,
                              int64_t mb, int64_t nb) {
  for (int64_t i = mb; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) dst[i * ldd + j] = src[j * lds + i];
  for (int64_t i = 0; i < mb; ++i)
    for (int64_t j = nb; j < n; ++j) dst[i * ldd + j] = src[j * lds + i];
}

}  // namespace
}  // namespace vl
