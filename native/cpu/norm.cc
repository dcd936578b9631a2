// LayerNorm over the last dimension, the fused residual add + LayerNorm
// of pre-norm transformer blocks (s = x + r; y = LN(s)) in one pass per row,
// and the LayerNorm backward.
#include <algorithm>
#include <cstring>
#include <vector>

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

// At most this many row chunks in the backward: its per-chunk weight-gradient
// partials ([chunks, 2, C]) stay small for any number of rows.
constexpr int64_t kMaxBackwardChunks = 64;

// in: dy, x [rows, C], mean, rstd [rows], weight [C]?; out: dx, [dweight, dbias [C]]
void layer_norm_backward(const KernelCall& c) {
  const TensorArg& x = c.in[1];
  const int64_t C = x.shape[x.ndim - 1], rows = C ? x.numel / C : 0;
  const float* pdy = static_cast<const float*>(c.in[0].data);
  const float* px = static_cast<const float*>(x.data);
  const float* mean = static_cast<const float*>(c.in[2].data);
  const float* rstd = static_cast<const float*>(c.in[3].data);
  const float* w = c.in.size() > 4 ? static_cast<const float*>(c.in[4].data) : nullptr;
  float* pdx = static_cast<float*>(c.out[0].data);
  const bool grads = c.out.size() > 2;
  // Chunk boundaries depend only on rows and C, and each chunk owns its
  // partial sums, so dweight/dbias do not depend on the thread count.
  const int64_t grain = std::max(row_grain(C), (rows + kMaxBackwardChunks - 1) / kMaxBackwardChunks);
  const int64_t chunks = (rows + grain - 1) / grain;
  std::vector<float> partial(grads ? static_cast<size_t>(chunks * 2 * C) : 0, 0.0f);
  const auto row = isa_kernels().layer_norm_backward_row;
  parallel_for(rows, grain, [&](int64_t s, int64_t e) {
    // A range may span several chunks when parallel_for runs inline.
    for (int64_t cs = s; cs < e; cs += grain) {
      float* dw = grads ? partial.data() + (cs / grain) * 2 * C : nullptr;
      float* db = grads ? dw + C : nullptr;
      for (int64_t r = cs; r < std::min(e, cs + grain); ++r)
        row(pdy + r * C, px + r * C, w, mean[r], rstd[r], pdx + r * C, dw, db, C);
    }
  });
  if (!grads) return;
  float* dweight = static_cast<float*>(c.out[1].data);
  float* dbias = static_cast<float*>(c.out[2].data);
  parallel_for(C, 1024, [&](int64_t s, int64_t e) {
    for (int64_t j = s; j < e; ++j) {
      float sw = 0.0f, sb = 0.0f;
      for (int64_t k = 0; k < chunks; ++k) {  // fixed order
        sw += partial[k * 2 * C + j];
        sb += partial[k * 2 * C + C + j];
      }
      dweight[j] = sw;
      dbias[j] = sb;
    }
  });
}

}  // namespace

VL_REGISTER_KERNEL(layer_norm, CPU, layer_norm);
VL_REGISTER_KERNEL(add_layer_norm, CPU, add_layer_norm);
VL_REGISTER_KERNEL(layer_norm_backward, CPU, layer_norm_backward);

}  // namespace cpu
}  // namespace vl
