// Element access for the CUDA kernels, mirroring cpu/element.h: every dtype
// is read as and written from a common computation type (float for floats,
// int64 for ints), with the same conversion rules bit for bit. Functions are
// __host__ __device__ so the host can compute fill values the same way; under
// a host compiler (the SIMT runner of the tests) they are plain inline.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/dispatch.h"
#include "core/error.h"
#include "core/half.h"
#include "cuda/simt.cuh"

#if defined(__CUDACC__)
#define VL_HD __host__ __device__ __forceinline__
#else
#define VL_HD inline
#endif

namespace vl {
namespace cuda {

struct bf16_t {
  uint16_t bits;
};
struct f16_t {
  uint16_t bits;
};

// Conversions: core/half.h (host and device).
template <typename T> struct Elem;
template <> struct Elem<float> {
  using Compute = float;
  static VL_HD float load(float v) { return v; }
  static VL_HD float store(float v) { return v; }
};
template <> struct Elem<bf16_t> {
  using Compute = float;
  static VL_HD float load(bf16_t v) { return bf16_to_f32(v.bits); }
  static VL_HD bf16_t store(float v) { return bf16_t{f32_to_bf16(v)}; }
};
template <> struct Elem<f16_t> {
  using Compute = float;
  static VL_HD float load(f16_t v) { return f16_to_f32(v.bits); }
  static VL_HD f16_t store(float v) { return f16_t{f32_to_f16(v)}; }
};
// std::numeric_limits is not usable in device code without relaxed constexpr.
template <typename I, int64_t Lo, int64_t Hi> struct IntElem {
  using Compute = int64_t;
  static constexpr int64_t lo = Lo, hi = Hi;
  static VL_HD int64_t load(I v) { return static_cast<int64_t>(v); }
  static VL_HD I store(int64_t v) { return static_cast<I>(v); }  // wraps like C; convert() saturates
};
template <> struct Elem<int32_t> : IntElem<int32_t, INT32_MIN, INT32_MAX> {};
template <> struct Elem<int64_t> : IntElem<int64_t, INT64_MIN, INT64_MAX> {};
template <> struct Elem<uint8_t> : IntElem<uint8_t, 0, 255> {};

template <typename T>
constexpr bool is_float_compute = std::is_same<typename Elem<T>::Compute, float>::value;

// Float -> int truncates toward zero, saturates and maps NaN to 0; int -> int saturates.
template <typename D, typename S>
VL_HD D convert(S s) {
  const auto v = Elem<S>::load(s);
  if constexpr (!is_float_compute<D> && is_float_compute<S>) {
    if (v != v) return Elem<D>::store(0);
    const double lo = static_cast<double>(Elem<D>::lo);
    const double hi = static_cast<double>(Elem<D>::hi);
    const double t = trunc(static_cast<double>(v));
    if (t <= lo) return Elem<D>::store(Elem<D>::lo);
    if (t >= hi) return Elem<D>::store(Elem<D>::hi);
    return Elem<D>::store(static_cast<int64_t>(t));
  } else if constexpr (!is_float_compute<D>) {
    const int64_t lo = Elem<D>::lo, hi = Elem<D>::hi;  // copies: no odr-use of host statics in device code
    return Elem<D>::store(v < lo ? lo : (v > hi ? hi : v));
  } else {
    return Elem<D>::store(static_cast<float>(v));
  }
}

// Elem<D>::store of a value in another computation type (int64 -> float, float -> int64 by C cast).
template <typename D, typename C>
VL_HD D store_as(C v) {
  return Elem<D>::store(static_cast<typename Elem<D>::Compute>(v));
}

// Calls f(T{}) with the element type of `dt` (host side).
template <typename F>
void dispatch_dtype(DType dt, F&& f) {
  switch (dt) {
    case DType::F32: f(float{}); return;
    case DType::BF16: f(bf16_t{}); return;
    case DType::F16: f(f16_t{}); return;
    case DType::I32: f(int32_t{}); return;
    case DType::I64: f(int64_t{}); return;
    case DType::U8: f(uint8_t{}); return;
  }
  fail(ErrorCode::DType, "unsupported dtype");
}

// Element offset of row-major flat index i in a strided tensor (numel > 0).
VL_HD int64_t offset_of(const TensorArg& t, int64_t i) {
  if (t.contiguous) return i;
  int64_t off = 0;
  for (int d = t.ndim - 1; d >= 0; --d) {
    const int64_t n = t.shape[d];
    off += (i % n) * t.strides[d];
    i /= n;
  }
  return off;
}

constexpr int kBlock = 256;
// Kernels loop grid-stride, so the grid can be capped.
inline unsigned int grid_for(int64_t n) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  return static_cast<unsigned int>(blocks < 1 ? 1 : (blocks > (int64_t(1) << 20) ? (int64_t(1) << 20) : blocks));
}

#define VL_GRID_STRIDE(i, n)                                                                                  \
  for (int64_t i = static_cast<int64_t>(::vl::simt::block_x()) * ::vl::simt::block_dim_x() + ::vl::simt::thread_x(); \
       i < (n); i += static_cast<int64_t>(::vl::simt::block_dim_x()) * ::vl::simt::grid_dim_x())

}  // namespace cuda
}  // namespace vl
