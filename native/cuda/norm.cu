// LayerNorm, the fused residual add + LayerNorm, and the LayerNorm backward on
// CUDA, with the contracts of cpu/norm.cc. Kernels: cuda/kernels/layer_norm.cuh,
// which the test suite runs through the SIMT runner against a reference.
#include <climits>

#include "core/dispatch.h"
#include "core/error.h"
#include "cuda/cuda_check.cuh"
#include "cuda/kernels/layer_norm.cuh"
#include "cuda/runtime.cuh"

namespace vl {
namespace cuda {
namespace {

constexpr int kRowThreads = 128;
constexpr int kColumnThreads = 256;

struct Rows {
  int64_t rows;
  int C;
};

Rows rows_of(const TensorArg& x, const char* op) {
  const int64_t C = x.shape[x.ndim - 1], rows = C ? x.numel / C : 0;
  VL_CHECK(C <= INT_MAX && rows <= INT_MAX, ErrorCode::Shape, op, ": rows of up to ", INT_MAX, " values and up to ",
           INT_MAX, " rows on CUDA, got ", rows, " rows of ", C);
  return {rows, static_cast<int>(C)};
}

const float* f32_in(const KernelCall& c, size_t i) { return static_cast<const float*>(c.in[i].data); }
float* f32_out(const KernelCall& c, size_t i) { return i < c.out.size() ? static_cast<float*>(c.out[i].data) : nullptr; }

// in: x [rows, C], weight?, bias?; out: y, [mean, rstd]. Or, with the residual:
// in: x, residual, weight?, bias?; out: sum, y, [mean, rstd].
void norm_forward(const KernelCall& c, bool residual, const char* op) {
  const Rows r = rows_of(c.in[0], op);
  const bool has_w = c.attrs.integer("has_weight") != 0, has_b = c.attrs.integer("has_bias") != 0;
  const size_t first = residual ? 2 : 1, out0 = residual ? 1 : 0;
  const float* w = has_w ? f32_in(c, first) : nullptr;
  const float* b = has_b ? f32_in(c, first + (has_w ? 1 : 0)) : nullptr;
  const int dev = c.device.index;
  kernels::layer_norm_rows<kRowThreads><<<static_cast<unsigned>(r.rows), kRowThreads, 0, current_stream(dev)>>>(
      f32_in(c, 0), residual ? f32_in(c, 1) : nullptr, residual ? f32_out(c, 0) : nullptr, w, b, f32_out(c, out0),
      f32_out(c, out0 + 1), f32_out(c, out0 + 2), r.C, static_cast<float>(c.attrs.num("eps")));
  check_launch("layer_norm_rows", dev);
}

void layer_norm(const KernelCall& c) { norm_forward(c, false, "layer_norm"); }
void add_layer_norm(const KernelCall& c) { norm_forward(c, true, "add_layer_norm"); }

// in: dy, x [rows, C], mean, rstd [rows], weight [C]?; out: dx, [dweight, dbias [C]]
void layer_norm_backward(const KernelCall& c) {
  const Rows r = rows_of(c.in[1], "layer_norm_backward");
  const int dev = c.device.index;
  cudaStream_t stream = current_stream(dev);
  const float* w = c.in.size() > 4 ? f32_in(c, 4) : nullptr;
  kernels::layer_norm_backward_rows<kRowThreads><<<static_cast<unsigned>(r.rows), kRowThreads, 0, stream>>>(
      f32_in(c, 0), f32_in(c, 1), f32_in(c, 2), f32_in(c, 3), w, f32_out(c, 0), r.C);
  check_launch("layer_norm_backward_rows", dev);
  if (c.out.size() > 2) {
    const unsigned blocks = static_cast<unsigned>((r.C + kColumnThreads - 1) / kColumnThreads);
    kernels::layer_norm_param_grads<<<blocks, kColumnThreads, 0, stream>>>(f32_in(c, 0), f32_in(c, 1), f32_in(c, 2),
                                                                           f32_in(c, 3), f32_out(c, 1), f32_out(c, 2),
                                                                           r.rows, r.C);
    check_launch("layer_norm_param_grads", dev);
  }
}

}  // namespace

VL_REGISTER_KERNEL(layer_norm, CUDA, layer_norm);
VL_REGISTER_KERNEL(add_layer_norm, CUDA, add_layer_norm);
VL_REGISTER_KERNEL(layer_norm_backward, CUDA, layer_norm_backward);

}  // namespace cuda
}  // namespace vl
