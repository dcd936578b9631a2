// Kernels that create values: fill, arange, and the Philox random generators,
// computing exactly what cpu/creation.cc computes.
#include "core/dispatch.h"
#include "core/philox.h"
#include "cuda/cuda_check.cuh"
#include "cuda/element.cuh"
#include "cuda/runtime.cuh"

namespace vl {
namespace cuda {
namespace {

template <typename T>
__global__ void fill_kernel(T* p, int64_t n, T v) {
  VL_GRID_STRIDE(i, n) p[i] = v;
}

// __dmul_rn/__dadd_rn keep nvcc from fusing into an FMA, which would round
// differently from the CPU's separate multiply and add.
template <typename T>
__global__ void arange_kernel(T* p, int64_t n, double start, double step) {
  VL_GRID_STRIDE(i, n) p[i] = store_as<T>(__dadd_rn(start, __dmul_rn(static_cast<double>(i), step)));
}

// Element i uses Philox block i/2 (key = seed, counter = (i/2, stream)), as on the CPU.
template <typename T>
__global__ void random_kernel(T* p, int64_t n, uint64_t seed, uint64_t stream, bool normal, double a, double b) {
  VL_GRID_STRIDE(i, n) {
    const uint64_t block = static_cast<uint64_t>(i) >> 1;
    const Philox4 r = philox4x32_10(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                                    static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32),
                                    static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    double v;
    if (normal) {
      const double radius = sqrt(__dmul_rn(-2.0, log(philox_unit_open0(r.v[0]))));
      const double theta = __dmul_rn(6.283185307179586, philox_unit_open0(r.v[1]));
      v = __dadd_rn(a, __dmul_rn(__dmul_rn(b, radius), (i & 1) ? sin(theta) : cos(theta)));
    } else {
      v = __dadd_rn(a, __dmul_rn(__dsub_rn(b, a), static_cast<double>(philox_unit_f32(r.v[(i & 1) ? 3 : 2]))));
    }
    p[i] = Elem<T>::store(static_cast<float>(v));
  }
}

void fill(const KernelCall& c) {
  const TensorArg& out = c.out[0];
  const double value = c.attrs.num("value");
  const int dev = c.device.index;
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    const T v = store_as<T>(value);
    fill_kernel<T><<<grid_for(out.numel), kBlock, 0, current_stream(dev)>>>(static_cast<T*>(out.data), out.numel, v);
    check_launch("fill", dev);
  });
}

void arange(const KernelCall& c) {
  const TensorArg& out = c.out[0];
  const double start = c.attrs.num("start"), step = c.attrs.num("step");
  const int dev = c.device.index;
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    arange_kernel<T><<<grid_for(out.numel), kBlock, 0, current_stream(dev)>>>(static_cast<T*>(out.data), out.numel,
                                                                               start, step);
    check_launch("arange", dev);
  });
}

void random(const KernelCall& c) {
  const TensorArg& out = c.out[0];
  const uint64_t seed = static_cast<uint64_t>(c.attrs.num("seed"));
  const uint64_t stream = static_cast<uint64_t>(c.attrs.num("stream"));
  const bool normal = c.attrs.integer("normal") != 0;
  const double a = c.attrs.num("a"), b = c.attrs.num("b");
  const int dev = c.device.index;
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!is_float_compute<T>) {
      fail(ErrorCode::DType, "random values need a float dtype");
    } else {
      random_kernel<T><<<grid_for(out.numel), kBlock, 0, current_stream(dev)>>>(static_cast<T*>(out.data), out.numel,
                                                                                 seed, stream, normal, a, b);
      check_launch("random", dev);
    }
  });
}

}  // namespace

VL_REGISTER_KERNEL(fill, CUDA, fill);
VL_REGISTER_KERNEL(arange, CUDA, arange);
VL_REGISTER_KERNEL(random, CUDA, random);

}  // namespace cuda
}  // namespace vl
