// Element access for the generic CPU kernels: every dtype is read as and
// written from a common computation type (float for floats, int64 for ints).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/dispatch.h"
#include "core/error.h"
#include "core/half.h"

namespace vl {
namespace cpu {

struct bf16_t {
  uint16_t bits;
};
struct f16_t {
  uint16_t bits;
};

template <typename T> struct Elem;
template <> struct Elem<float> {
  using Compute = float;
  static float load(float v) { return v; }
  static float store(float v) { return v; }
};
template <> struct Elem<bf16_t> {
  using Compute = float;
  static float load(bf16_t v) { return bf16_to_f32(v.bits); }
  static bf16_t store(float v) { return bf16_t{f32_to_bf16(v)}; }
};
template <> struct Elem<f16_t> {
  using Compute = float;
  static float load(f16_t v) { return f16_to_f32(v.bits); }
  static f16_t store(float v) { return f16_t{f32_to_f16(v)}; }
};
template <typename I> struct IntElem {
  using Compute = int64_t;
  static int64_t load(I v) { return static_cast<int64_t>(v); }
  static I store(int64_t v) { return static_cast<I>(v); }  // wraps like C; casts to ints saturate in convert()
};
template <> struct Elem<int32_t> : IntElem<int32_t> {};
template <> struct Elem<int64_t> : IntElem<int64_t> {};
template <> struct Elem<uint8_t> : IntElem<uint8_t> {};

// Value conversion between element types. Float -> int truncates toward zero,
// saturates at the target's range and maps NaN to 0 (defined, unlike a C cast).
template <typename D, typename S>
D convert(S s) {
  using SC = typename Elem<S>::Compute;
  using DC = typename Elem<D>::Compute;
  const SC v = Elem<S>::load(s);
  if constexpr (std::is_same<DC, int64_t>::value && std::is_same<SC, float>::value) {
    if (v != v) return Elem<D>::store(0);
    const double lo = static_cast<double>(std::numeric_limits<D>::lowest());
    const double hi = static_cast<double>(std::numeric_limits<D>::max());
    const double t = std::trunc(static_cast<double>(v));
    if (t <= lo) return std::numeric_limits<D>::lowest();
    if (t >= hi) return std::numeric_limits<D>::max();
    return Elem<D>::store(static_cast<int64_t>(t));
  } else if constexpr (std::is_same<DC, int64_t>::value) {
    const int64_t lo = static_cast<int64_t>(std::numeric_limits<D>::lowest());
    const int64_t hi = static_cast<int64_t>(std::numeric_limits<D>::max());
    return Elem<D>::store(v < lo ? lo : (v > hi ? hi : v));
  } else {
    return Elem<D>::store(static_cast<DC>(v));
  }
}

// Calls f.template operator()<T>() with the C++ type of `dt`.
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

// Walks the elements [begin, end) of a strided tensor in row-major order,
// calling f(flat_index, element_offset) with an incrementally updated offset.
template <typename F>
void for_each_offset(const TensorArg& t, int64_t begin, int64_t end, F&& f) {
  if (t.contiguous) {
    for (int64_t i = begin; i < end; ++i) f(i, i);
    return;
  }
  int64_t idx[kMaxDims];
  int64_t off = 0, rem = begin;
  for (int d = t.ndim - 1; d >= 0; --d) {
    idx[d] = t.shape[d] ? rem % t.shape[d] : 0;
    rem = t.shape[d] ? rem / t.shape[d] : 0;
    off += idx[d] * t.strides[d];
  }
  for (int64_t i = begin; i < end; ++i) {
    f(i, off);
    for (int d = t.ndim - 1; d >= 0; --d) {
      off += t.strides[d];
      if (++idx[d] < t.shape[d]) break;
      off -= idx[d] * t.strides[d];
      idx[d] = 0;
    }
  }
}

// Grain for elementwise loops: big enough that scheduling cost is negligible.
constexpr int64_t kElementGrain = 1 << 15;

}  // namespace cpu
}  // namespace vl
