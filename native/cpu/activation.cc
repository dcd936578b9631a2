// Softmax over the last dimension, the elementwise activations and their
// gradients, and the SwiGLU gate silu(a1) * a2.
#include <algorithm>
#include <cmath>

#include "core/dispatch.h"
#include "core/thread_pool.h"
#include "cpu/element.h"
#include "cpu/simd/isa.h"

namespace vl {
namespace cpu {
namespace {

// in: x [rows, n] contiguous; out: y, [lse [rows]]
void softmax(const KernelCall& c) {
  const TensorArg& x = c.in[0];
  const int64_t n = x.shape[x.ndim - 1], rows = n ? x.numel / n : 0;
  const float* px = static_cast<const float*>(x.data);
  float* py = static_cast<float*>(c.out[0].data);
  float* lse = c.out.size() > 1 ? static_cast<float*>(c.out[1].data) : nullptr;
  const auto row = isa_kernels().softmax_row;
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) row(px + r * n, py + r * n, n, lse ? lse + r : nullptr);
  });
}

void silu(const KernelCall& c) {
  const float* px = static_cast<const float*>(c.in[0].data);
  float* py = static_cast<float*>(c.out[0].data);
  const auto fn = isa_kernels().silu;
  parallel_for(c.out[0].numel, kElementGrain, [&](int64_t s, int64_t e) { fn(px + s, py + s, e - s); });
}

// GELU with the exact erf (as torch.nn.GELU()).
void gelu(const KernelCall& c) {
  const float* px = static_cast<const float*>(c.in[0].data);
  float* py = static_cast<float*>(c.out[0].data);
  parallel_for(c.out[0].numel, kElementGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) py[i] = 0.5f * px[i] * (1.0f + std::erf(px[i] * 0.70710678118654752f));
  });
}

// in: dy, x; out: dx
void silu_backward(const KernelCall& c) {
  const float* pdy = static_cast<const float*>(c.in[0].data);
  const float* px = static_cast<const float*>(c.in[1].data);
  float* pdx = static_cast<float*>(c.out[0].data);
  const auto fn = isa_kernels().silu_backward;
  parallel_for(c.out[0].numel, kElementGrain, [&](int64_t s, int64_t e) { fn(px + s, pdy + s, pdx + s, e - s); });
}

// in: dy, x; out: dx = dy * (Phi(x) + x * phi(x)), the derivative of the exact GELU.
void gelu_backward(const KernelCall& c) {
  const float* pdy = static_cast<const float*>(c.in[0].data);
  const float* px = static_cast<const float*>(c.in[1].data);
  float* pdx = static_cast<float*>(c.out[0].data);
  parallel_for(c.out[0].numel, kElementGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) {
      const float x = px[i];
      const float cdf = 0.5f * (1.0f + std::erf(x * 0.70710678118654752f));
      const float pdf = std::exp(-0.5f * x * x) * 0.39894228040143268f;  // 1/sqrt(2 pi)
      pdx[i] = pdy[i] * (cdf + x * pdf);
    }
  });
}

// Rows per chunk for row-wise kernels over `width` values.
int64_t rows_grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(width, 1)); }

// in: a [rows, 2H] = [a1 | a2]; out: h [rows, H] = silu(a1) * a2
void swiglu_gate(const KernelCall& c) {
  const TensorArg& h = c.out[0];
  const int64_t H = h.shape[h.ndim - 1], rows = H ? h.numel / H : 0;
  const float* pa = static_cast<const float*>(c.in[0].data);
  float* ph = static_cast<float*>(h.data);
  const auto fn = isa_kernels().swiglu_gate;
  parallel_for(rows, rows_grain(2 * H), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) fn(pa + r * 2 * H, pa + r * 2 * H + H, ph + r * H, H);
  });
}

// in: dh [rows, H], a [rows, 2H]; out: da [rows, 2H] = [da1 | da2]
void swiglu_gate_backward(const KernelCall& c) {
  const TensorArg& dh = c.in[0];
  const int64_t H = dh.shape[dh.ndim - 1], rows = H ? dh.numel / H : 0;
  const float* pdh = static_cast<const float*>(dh.data);
  const float* pa = static_cast<const float*>(c.in[1].data);
  float* pda = static_cast<float*>(c.out[0].data);
  const auto fn = isa_kernels().swiglu_gate_backward;
  parallel_for(rows, rows_grain(3 * H), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r)
      fn(pdh + r * H, pa + r * 2 * H, pa + r * 2 * H + H, pda + r * 2 * H, pda + r * 2 * H + H, H);
  });
}

}  // namespace

VL_REGISTER_KERNEL(softmax, CPU, softmax);
VL_REGISTER_KERNEL(silu, CPU, silu);
VL_REGISTER_KERNEL(gelu, CPU, gelu);
VL_REGISTER_KERNEL(silu_backward, CPU, silu_backward);
VL_REGISTER_KERNEL(gelu_backward, CPU, gelu_backward);
VL_REGISTER_KERNEL(swiglu_gate, CPU, swiglu_gate);
VL_REGISTER_KERNEL(swiglu_gate_backward, CPU, swiglu_gate_backward);

}  // namespace cpu
}  // namespace vl
