// LayerNorm over the last dimension, and the fused residual add + LayerNorm
// of pre-norm transformer blocks (s = x + r; y = LN(s)) in one pass per row.
#include <cstring>

#include "core/dispatch.h"
#include "core/thread_pool.h"
#include "cpu/simd/isa.h"

namespace vl {
namespace cpu {
namespace {

// Rows per parallel chunk: enough work per chunk for any row width.
int64_t row_grain(int64_t width) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(width, 1)); }

// in: x [rows, C], weight [C]?, bias [C]? (has_weight/has_bias attrs); out: y, [mean, rstd]
void layer_norm(const KernelCall& c) {
  const TensorArg& x = c.in[0];
  const int64_t C = x.shape[x.ndim - 1], rows = C ? x.numel / C : 0;
  const bool has_w = c.attrs.integer("has_weight") != 0, has_b = c.attrs.integer("has_bias") != 0;
  const float* w = has_w ? static_cast<const float*>(c.in[1].data) : nullptr;
  const float* b = has_b ? static_cast<const float*>(c.in[has_w ? 2 : 1].data) : nullptr;
  const float eps = static_cast<float>(c.attrs.num("eps"));
  const float* px = static_cast<const float*>(x.data);
  float* py = static_cast<float*>(c.out[0].data);
  float* mean = c.out.size() > 1 ? static_cast<float*>(c.out[1].data) : nullptr;
  float* rstd = c.out.size() > 2 ? static_cast<float*>(c.out[2].data) : nullptr;
  const auto row = isa_kernels().layer_norm_row;
  parallel_for(rows, row_grain(C), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r)
      row(px + r * C, w, b, py + r * C, C, eps, mean ? mean + r : nullptr, rstd ? rstd + r : nullptr);
  });
}

// in: x, residual [rows, C], weight?, bias?; out: sum, y, [mean, rstd]
void add_layer_norm(const KernelCall& c) {
  const TensorArg& x = c.in[0];
  const int64_t C = x.shape[x.ndim - 1], rows = C ? x.numel / C : 0;
  const bool has_w = c.attrs.integer("has_weight") != 0, has_b = c.attrs.integer("has_bias") != 0;
  const float* w = has_w ? static_cast<const float*>(c.in[2].data) : nullptr;
  const float* b = has_b ? static_cast<const float*>(c.in[has_w ? 3 : 2].data) : nullptr;
  const float eps = static_cast<float>(c.attrs.num("eps"));
  const float* px = static_cast<const float*>(x.data);
  const float* pr = static_cast<const float*>(c.in[1].data);
  float* ps = static_cast<float*>(c.out[0].data);
  float* py = static_cast<float*>(c.out[1].data);
  float* mean = c.out.size() > 2 ? static_cast<float*>(c.out[2].data) : nullptr;
  float* rstd = c.out.size() > 3 ? static_cast<float*>(c.out[3].data) : nullptr;
  const IsaKernels& k = isa_kernels();
  parallel_for(rows, row_grain(C), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) {
      k.add_f32(px + r * C, pr + r * C, ps + r * C, C);  // the sum row stays in L1 for the norm
      k.layer_norm_row(ps + r * C, w, b, py + r * C, C, eps, mean ? mean + r : nullptr, rstd ? rstd + r : nullptr);
    }
  });
}

}  // namespace

VL_REGISTER_KERNEL(layer_norm, CPU, layer_norm);
VL_REGISTER_KERNEL(add_layer_norm, CPU, add_layer_norm);

}  // namespace cpu
}  // namespace vl
