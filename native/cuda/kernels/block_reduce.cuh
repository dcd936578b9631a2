// Block-wide reductions for the row kernels (one block per row): warp
// shuffles, then one shared-memory exchange between warps.
#pragma once
#include <cmath>

#include "cuda/simt.cuh"

namespace vl {
namespace cuda {
namespace kernels {

struct MaxOp {
  static VL_DEVICE float identity() { return -INFINITY; }
  static VL_DEVICE float apply(float a, float b) { return fmaxf(a, b); }
};
struct SumOp {
  static VL_DEVICE float identity() { return 0.0f; }
  static VL_DEVICE float apply(float a, float b) { return a + b; }
};

// Every thread of the block gets the reduction of every thread's `v`.
// `partial` holds one value per warp; the block is a whole number of warps.
template <typename Op>
VL_DEVICE float block_reduce(float v, float* partial) {
  for (int m = 16; m > 0; m >>= 1) v = Op::apply(v, simt::shfl_xor(v, m));
  if (simt::lane() == 0) partial[simt::warp()] = v;
  simt::sync_threads();
  const int warps = simt::block_dim_x() / 32;
  float total = simt::lane() < warps ? partial[simt::lane()] : Op::identity();
  for (int m = 16; m > 0; m >>= 1) total = Op::apply(total, simt::shfl_xor(total, m));
  simt::sync_threads();  // partial is free again
  return total;
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
