// copy: strided input -> contiguous output, converting the dtype with the
// rules of element.cuh (as cpu/copy.cc); copy_into: into a strided output
// view; and window partition / merge for locally-grouped attention (as
// cpu/window.cc). Kernel source shared by nvcc and the SIMT runner.
#pragma once
#include "cuda/element.cuh"

namespace vl {
namespace cuda {
namespace kernels {

template <typename S, typename D>
VL_GLOBAL void copy_kernel(TensorArg in, D* out, int64_t n) {
  const S* src = static_cast<const S*>(in.data);
  VL_GRID_STRIDE(i, n) out[i] = convert<D>(src[offset_of(in, i)]);
}

// Both sides strided (the output is a slice of a larger tensor, as concat writes).
template <typename S, typename D>
VL_GLOBAL void copy_into_kernel(TensorArg in, TensorArg out, int64_t n) {
  const S* src = static_cast<const S*>(in.data);
  D* dst = static_cast<D*>(out.data);
  VL_GRID_STRIDE(i, n) dst[offset_of(out, i)] = convert<D>(src[offset_of(in, i)]);
}

// Tokens of a [B, H, W, C] map and their ws x ws windows ([B*nh*nw, ws*ws, C],
// zero-padded at the bottom and right), moved as whole elements of T.
struct WindowShape {
  int64_t B, H, W, C, ws, nh, nw;
};

// One thread per window element: out[win, wy*ws + wx, c] from the map, or 0 in the padding.
template <typename T>
VL_GLOBAL void window_partition_kernel(const T* VL_RESTRICT x, T* VL_RESTRICT out, WindowShape g) {
  const int64_t n = g.B * g.nh * g.nw * g.ws * g.ws * g.C;
  VL_GRID_STRIDE(i, n) {
    const int64_t c = i % g.C, tok = i / g.C;
    const int64_t wx = tok % g.ws, wy = (tok / g.ws) % g.ws, win = tok / (g.ws * g.ws);
    const int64_t bx = win % g.nw, by = (win / g.nw) % g.nh, b = win / (g.nw * g.nh);
    const int64_t y = by * g.ws + wy, xx = bx * g.ws + wx;
    out[i] = y < g.H && xx < g.W ? x[((b * g.H + y) * g.W + xx) * g.C + c] : T{};
  }
}

// One thread per map element: the inverse, dropping the padding.
template <typename T>
VL_GLOBAL void window_merge_kernel(const T* VL_RESTRICT windows, T* VL_RESTRICT out, WindowShape g) {
  const int64_t n = g.B * g.H * g.W * g.C;
  VL_GRID_STRIDE(i, n) {
    const int64_t c = i % g.C, xx = (i / g.C) % g.W, y = (i / (g.C * g.W)) % g.H, b = i / (g.C * g.W * g.H);
    const int64_t win = (b * g.nh + y / g.ws) * g.nw + xx / g.ws;
    out[i] = windows[(win * g.ws * g.ws + (y % g.ws) * g.ws + xx % g.ws) * g.C + c];
  }
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
