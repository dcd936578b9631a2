// copy: strided input -> contiguous output, converting the dtype. Used for
// contiguous(), to(dtype) and reading data back to JavaScript.
#include <algorithm>
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

// The input's dims with size-1 dims dropped and neighbours merged where the
// strides allow (the output is contiguous, so any merge is valid for it).
struct Dims {
  int n = 0;
  int64_t shape[kMaxDims], stride[kMaxDims];
};
Dims coalesce(const TensorArg& t) {
  Dims d;
  for (int i = 0; i < t.ndim; ++i) {
    if (t.shape[i] == 1) continue;
    if (d.n > 0 && d.stride[d.n - 1] == t.strides[i] * t.shape[i]) {
      d.shape[d.n - 1] *= t.shape[i];
      d.stride[d.n - 1] = t.strides[i];
    } else {
      d.shape[d.n] = t.shape[i];
      d.stride[d.n] = t.strides[i];
      ++d.n;
    }
  }
  return d;
}

// Input offset of element `i` of dims [0, nd) except `skip` (row-major over those).
int64_t offset_except(const Dims& d, int nd, int skip, int64_t i) {
  int64_t off = 0;
  for (int k = nd - 1; k >= 0; --k) {
    if (k == skip) continue;
    off += (i % d.shape[k]) * d.stride[k];
    i /= d.shape[k];
  }
  return off;
}

// Same-dtype copies of strided views with a unit-stride dim. The innermost:
// rows of contiguous runs (one memcpy each). Another one: a transpose, done
// in square tiles so that both the strided reads and the writes stay within
// a few dozen cache lines.
template <typename U>
bool copy_strided(const Dims& d, const U* src, U* dst) {
  if (d.n == 0) return false;
  const int last = d.n - 1;
  if (d.stride[last] == 1) {
    const int64_t len = d.shape[last];
    int64_t rows = 1;
    for (int k = 0; k < last; ++k) rows *= d.shape[k];
    parallel_for(rows, std::max<int64_t>(1, kElementGrain / len), [&](int64_t r0, int64_t r1) {
      // Row offsets advance like an odometer over the outer dims.
      int64_t idx[kMaxDims] = {}, off = 0, rem = r0;
      for (int k = last - 1; k >= 0; --k) {
        idx[k] = rem % d.shape[k];
        rem /= d.shape[k];
        off += idx[k] * d.stride[k];
      }
      for (int64_t r = r0; r < r1; ++r) {
        U* o = dst + r * len;
        if (len >= 16)
          std::memcpy(o, src + off, static_cast<size_t>(len) * sizeof(U));
        else
          for (int64_t j = 0; j < len; ++j) o[j] = src[off + j];
        for (int k = last - 1; k >= 0; --k) {
          off += d.stride[k];
          if (++idx[k] < d.shape[k]) break;
          off -= idx[k] * d.stride[k];
          idx[k] = 0;
        }
      }
    });
    return true;
  }
  int p = -1;
  for (int k = 0; k < last; ++k)
    if (d.stride[k] == 1) p = k;
  if (p < 0) return false;
  // Plane (p, last): element (i, j) at in + i + j * sj, out + i * os + j.
  constexpr int64_t kTile = 64;
  const int64_t P = d.shape[p], Q = d.shape[last], sj = d.stride[last];
  int64_t os = 1;
  for (int k = p + 1; k < d.n; ++k) os *= d.shape[k];
  int64_t planes = 1;
  for (int k = 0; k < last; ++k)
    if (k != p) planes *= d.shape[k];
  const int64_t ti = (P + kTile - 1) / kTile, tj = (Q + kTile - 1) / kTile;
  parallel_for(planes * ti * tj, std::max<int64_t>(1, kElementGrain / (kTile * kTile)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t plane = t / (ti * tj), i0 = (t / tj) % ti * kTile, j0 = t % tj * kTile;
      // The plane's first output element: the other dims' index, placed in the output's row-major order.
      int64_t rem = plane, obase = 0, mult = 1;
      for (int k = last - 1; k >= 0; --k) {
        if (k == p) {
          mult *= d.shape[k];
          continue;
        }
        obase += (rem % d.shape[k]) * mult;
        rem /= d.shape[k];
        mult *= d.shape[k];
      }
      obase *= Q;
      const U* s = src + offset_except(d, last, p, plane);
      U* o = dst + obase;
      const int64_t i1 = std::min(P, i0 + kTile), j1 = std::min(Q, j0 + kTile);
      if constexpr (sizeof(U) == 4) {
        isa_kernels().transpose32(s + i0 + j0 * sj, sj, o + i0 * os + j0, os, i1 - i0, j1 - j0);
      } else {
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t j = j0; j < j1; ++j) o[i * os + j] = s[i + j * sj];
      }
    }
  });
  return true;
}

bool copy_same_dtype(const TensorArg& in, const TensorArg& out) {
  if (in.dtype != out.dtype) return false;
  const Dims d = coalesce(in);
  switch (dtype_size(in.dtype)) {
    case 1: return copy_strided(d, static_cast<const uint8_t*>(in.data), static_cast<uint8_t*>(out.data));
    case 2: return copy_strided(d, static_cast<const uint16_t*>(in.data), static_cast<uint16_t*>(out.data));
    case 4: return copy_strided(d, static_cast<const uint32_t*>(in.data), static_cast<uint32_t*>(out.data));
    case 8: return copy_strided(d, static_cast<const uint64_t*>(in.data), static_cast<uint64_t*>(out.data));
  }
  return false;
}

void copy(const KernelCall& c) {
  const TensorArg& in = c.in[0];
  const TensorArg& out = c.out[0];
  if (copy_fast(in, out)) return;
  if (copy_same_dtype(in, out)) return;
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
