// copy: strided input -> contiguous output, converting the dtype. Used for
// contiguous(), to(dtype) and reading data back to JavaScript.
#include <cstring>
#include <vector>

#include "core/dispatch.h"
#include "core/thread_pool.h"
#include "cpu/element.h"
#include "cpu/simd/isa.h"

namespace vl {
namespace cpu {
namespace {

// Contiguous conversions between f32 and the 16-bit floats use the SIMD table.
bool copy_fast(const TensorArg& in, const TensorArg& out) {
  if (!in.contiguous) return false;
  const IsaKernels& k = isa_kernels();
  const int64_t n = out.numel;
  auto run = [&](auto fn, auto src, auto dst) {
    parallel_for(n, kElementGrain, [&](int64_t b, int64_t e) { fn(src + b, dst + b, e - b); });
    return true;
  };
  const auto* f32_in = static_cast<const float*>(in.data);
  const auto* u16_in = static_cast<const uint16_t*>(in.data);
  auto* f32_out = static_cast<float*>(out.data);
  auto* u16_out = static_cast<uint16_t*>(out.data);
  if (in.dtype == out.dtype) {
    const size_t esize = dtype_size(in.dtype);
    const auto* s = static_cast<const char*>(in.data);
    auto* d = static_cast<char*>(out.data);
    parallel_for(n, kElementGrain * 4, [&](int64_t b, int64_t e) { std::memcpy(d + b * esize, s + b * esize, (e - b) * esize); });
    return true;
  }
  if (in.dtype == DType::F32 && out.dtype == DType::BF16) return run(k.f32_to_bf16, f32_in, u16_out);
  if (in.dtype == DType::BF16 && out.dtype == DType::F32) return run(k.bf16_to_f32, u16_in, f32_out);
  if (in.dtype == DType::F32 && out.dtype == DType::F16) return run(k.f32_to_f16, f32_in, u16_out);
  if (in.dtype == DType::F16 && out.dtype == DType::F32) return run(k.f16_to_f32, u16_in, f32_out);
  return false;
}

void copy(const KernelCall& c) {
  const TensorArg& in = c.in[0];
  const TensorArg& out = c.out[0];
  if (copy_fast(in, out)) return;
  dispatch_dtype(in.dtype, [&](auto stag) {
    using S = decltype(stag);
    dispatch_dtype(out.dtype, [&](auto dtag) {
      using D = decltype(dtag);
      const S* src = static_cast<const S*>(in.data);
      D* dst = static_cast<D*>(out.data);
      parallel_for(out.numel, kElementGrain, [&](int64_t b, int64_t e) {
        for_each_offset(in, b, e, [&](int64_t i, int64_t off) { dst[i] = convert<D>(src[off]); });
      });
    });
  });
}

// copy_into: like copy, but the output is a strided view (a slice of a larger
// tensor, as concat writes); offsets of both sides advance independently.
void copy_into(const KernelCall& c) {
  const TensorArg& in = c.in[0];
  const TensorArg& out = c.out[0];
  if (out.contiguous) return copy(c);
  dispatch_dtype(in.dtype, [&](auto stag) {
    using S = decltype(stag);
    dispatch_dtype(out.dtype, [&](auto dtag) {
      using D = decltype(dtag);
      const S* src = static_cast<const S*>(in.data);
      D* dst = static_cast<D*>(out.data);
      parallel_for(out.numel, kElementGrain, [&](int64_t b, int64_t e) {
        std::vector<int64_t> doff(static_cast<size_t>(e - b));
        for_each_offset(out, b, e, [&](int64_t i, int64_t off) { doff[i - b] = off; });
        for_each_offset(in, b, e, [&](int64_t i, int64_t off) { dst[doff[i - b]] = convert<D>(src[off]); });
      });
    });
  });
}

}  // namespace

VL_REGISTER_KERNEL(copy, CPU, copy);
VL_REGISTER_KERNEL(copy_into, CPU, copy_into);

}  // namespace cpu
}  // namespace vl
