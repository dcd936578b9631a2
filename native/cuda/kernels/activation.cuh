// Elementwise activations and their gradients (as cpu/activation.cc): SiLU,
// the exact-erf GELU, and the SwiGLU gate h = silu(a1) * a2 over rows laid out
// as [a1 | a2]. Grid-stride loops, so any grid covers any size. Kernel source
// shared by nvcc and the SIMT runner (cuda/simt.cuh).
#pragma once
#include <cmath>
#include <cstdint>

#include "cuda/simt.cuh"

namespace vl {
namespace cuda {
namespace kernels {

VL_DEVICE int64_t first_index() {
  return static_cast<int64_t>(simt::block_x()) * simt::block_dim_x() + simt::thread_x();
}
VL_DEVICE int64_t grid_stride() { return static_cast<int64_t>(simt::grid_dim_x()) * simt::block_dim_x(); }

VL_DEVICE float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

enum class Act { Silu, Gelu };

template <Act kAct>
VL_GLOBAL void activation_forward(const float* VL_RESTRICT x, float* VL_RESTRICT y, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = x[i];
    y[i] = kAct == Act::Silu ? v * sigmoid(v) : 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
  }
}

// dx = dy * d act / dx
template <Act kAct>
VL_GLOBAL void activation_backward(const float* VL_RESTRICT dy, const float* VL_RESTRICT x, float* VL_RESTRICT dx,
                                   int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float v = x[i];
    float d;
    if (kAct == Act::Silu) {
      const float s = sigmoid(v);
      d = s * (1.0f + v * (1.0f - s));
    } else {
      const float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
      d = cdf + v * expf(-0.5f * v * v) * 0.39894228040143268f;  // 1/sqrt(2 pi)
    }
    dx[i] = dy[i] * d;
  }
}

// a [rows, 2H] = [a1 | a2] -> h [rows, H] = silu(a1) * a2
VL_GLOBAL void swiglu_gate_forward(const float* VL_RESTRICT a, float* VL_RESTRICT h, int64_t rows, int64_t H) {
  for (int64_t i = first_index(); i < rows * H; i += grid_stride()) {
    const int64_t r = i / H, j = i % H;
    const float a1 = a[r * 2 * H + j], a2 = a[r * 2 * H + H + j];
    h[i] = a1 * sigmoid(a1) * a2;
  }
}

// dh [rows, H], a [rows, 2H] -> da [rows, 2H] = [dh * a2 * silu'(a1) | dh * silu(a1)]
VL_GLOBAL void swiglu_gate_backward(const float* VL_RESTRICT dh, const float* VL_RESTRICT a, float* VL_RESTRICT da,
                                    int64_t rows, int64_t H) {
  for (int64_t i = first_index(); i < rows * H; i += grid_stride()) {
    const int64_t r = i / H, j = i % H;
    const float a1 = a[r * 2 * H + j], a2 = a[r * 2 * H + H + j];
    const float s = sigmoid(a1);
    da[r * 2 * H + j] = dh[i] * a2 * s * (1.0f + a1 * (1.0f - s));
    da[r * 2 * H + H + j] = dh[i] * a1 * s;
  }
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
