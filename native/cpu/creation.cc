// Kernels that create values: fill, arange, and the Philox random generators.
#include <cmath>

#include "core/dispatch.h"
#include "core/philox.h"
#include "core/thread_pool.h"
#include "cpu/element.h"

namespace vl {
namespace cpu {
namespace {

void fill(const KernelCall& c) {
  const TensorArg& out = c.out[0];
  const double value = c.attrs.num("value");
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    using C = typename Elem<T>::Compute;
    const T v = Elem<T>::store(static_cast<C>(value));
    T* p = static_cast<T*>(out.data);
    parallel_for(out.numel, kElementGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) p[i] = v;
    });
  });
}

void arange(const KernelCall& c) {
  const TensorArg& out = c.out[0];
  const double start = c.attrs.num("start"), step = c.attrs.num("step");
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    using C = typename Elem<T>::Compute;
    T* p = static_cast<T*>(out.data);
    parallel_for(out.numel, kElementGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) p[i] = Elem<T>::store(static_cast<C>(start + static_cast<double>(i) * step));
    });
  });
}

// Element i uses Philox block i/2 (key = seed, counter = (i/2, stream));
// normal pairs come from Box-Muller in double precision, then round once.
void random(const KernelCall& c) {
  const TensorArg& out = c.out[0];
  const uint64_t seed = static_cast<uint64_t>(c.attrs.num("seed"));
  const uint64_t stream = static_cast<uint64_t>(c.attrs.num("stream"));
  const bool normal = c.attrs.integer("normal") != 0;
  const double a = c.attrs.num("a"), b = c.attrs.num("b");  // mean/std or low/high
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same<typename Elem<T>::Compute, float>::value) {
      fail(ErrorCode::DType, "random values need a float dtype");
    } else {
      T* p = static_cast<T*>(out.data);
      parallel_for(out.numel, kElementGrain, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const uint64_t block = static_cast<uint64_t>(i) >> 1;
          const Philox4 r = philox4x32_10(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                                          static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32),
                                          static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
          double v;
          if (normal) {
            const double radius = std::sqrt(-2.0 * std::log(philox_unit_open0(r.v[0])));
            const double theta = 6.283185307179586 * philox_unit_open0(r.v[1]);
            v = a + b * radius * ((i & 1) ? std::sin(theta) : std::cos(theta));
          } else {
            v = a + (b - a) * static_cast<double>(philox_unit_f32(r.v[(i & 1) ? 3 : 2]));
          }
          p[i] = Elem<T>::store(static_cast<float>(v));
        }
      });
    }
  });
}

}  // namespace

VL_REGISTER_KERNEL(fill, CPU, fill);
VL_REGISTER_KERNEL(arange, CPU, arange);
VL_REGISTER_KERNEL(random, CPU, random);

}  // namespace cpu
}  // namespace vl
