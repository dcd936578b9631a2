// Binary elementwise ops with broadcasting. The launcher gives both inputs
// the output's shape (stride 0 along broadcast dims).
#include "core/dispatch.h"
#include "core/thread_pool.h"
#include "cpu/element.h"
#include "cpu/simd/isa.h"

namespace vl {
namespace cpu {
namespace {

enum class BinaryOp { Add, Sub, Mul, Div };

template <BinaryOp op, typename C>
inline C apply(C a, C b) {
  if constexpr (op == BinaryOp::Add) return a + b;
  if constexpr (op == BinaryOp::Sub) return a - b;
  if constexpr (op == BinaryOp::Mul) return a * b;
  if constexpr (op == BinaryOp::Div) {
    if constexpr (std::is_integral<C>::value) {
      // Integer division by zero is undefined in C++; report it instead.
      if (b == 0) fail(ErrorCode::Argument, "div: integer division by zero");
      // INT64_MIN / -1 traps on x86; it wraps (to INT64_MIN) as on the GPU.
      if (b == -1) return static_cast<C>(0 - static_cast<uint64_t>(a));
    }
    return a / b;
  }
}

template <BinaryOp op>
void binary(const KernelCall& c) {
  const TensorArg &a = c.in[0], &b = c.in[1], &out = c.out[0];
  if (out.dtype == DType::F32 && a.contiguous && b.contiguous) {
    const IsaKernels& k = isa_kernels();
    auto fn = op == BinaryOp::Add ? k.add_f32 : op == BinaryOp::Sub ? k.sub_f32 : op == BinaryOp::Mul ? k.mul_f32 : k.div_f32;
    const float *pa = static_cast<const float*>(a.data), *pb = static_cast<const float*>(b.data);
    float* po = static_cast<float*>(out.data);
    parallel_for(out.numel, kElementGrain, [&](int64_t s, int64_t e) { fn(pa + s, pb + s, po + s, e - s); });
    return;
  }
  dispatch_dtype(out.dtype, [&](auto tag) {
    using T = decltype(tag);
    using E = Elem<T>;
    const T* pa = static_cast<const T*>(a.data);
    const T* pb = static_cast<const T*>(b.data);
    T* po = static_cast<T*>(out.data);
    parallel_for(out.numel, kElementGrain, [&](int64_t s, int64_t e) {
      // Offsets of a and b advance independently; collect b's first.
      std::vector<int64_t> boff(static_cast<size_t>(e - s));
      for_each_offset(b, s, e, [&](int64_t i, int64_t off) { boff[i - s] = off; });
      for_each_offset(a, s, e, [&](int64_t i, int64_t off) {
        po[i] = E::store(apply<op>(E::load(pa[off]), E::load(pb[boff[i - s]])));
      });
    });
  });
}

}  // namespace

VL_REGISTER_KERNEL(add, CPU, binary<BinaryOp::Add>);
VL_REGISTER_KERNEL(sub, CPU, binary<BinaryOp::Sub>);
VL_REGISTER_KERNEL(mul, CPU, binary<BinaryOp::Mul>);
VL_REGISTER_KERNEL(div, CPU, binary<BinaryOp::Div>);

}  // namespace cpu
}  // namespace vl
