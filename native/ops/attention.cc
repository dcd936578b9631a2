#include "ops/attention.h"

#include <cmath>
#include <cstdlib>
#include <string>

#include "core/dispatch.h"
#include "core/error.h"
#include "ops/ops.h"

namespace vl {
namespace ops {
namespace {

constexpr int64_t kMinHeadDim = 16, kMaxHeadDim = 256;

// The kernel reads rows with their last dim contiguous; anything else is copied.
TensorPtr rows_contiguous(const TensorPtr& t) {
  return t->shape()[3] <= 1 || t->strides()[3] == 1 ? t : contiguous(t);
}

// Checks one position spec and adds its attributes (and tensors) for the kernel.
void add_positions(const RopePositions& p, const char* which, const char* prefix, int64_t count, const TensorPtr& q,
                   Attrs& attrs, std::vector<TensorPtr>& inputs) {
  const std::string pre(prefix);
  if (p.x || p.y) {
    VL_CHECK(p.x && p.y, ErrorCode::Argument, "attention: ", which, " positions need both x and y");
    for (const TensorPtr* t : {&p.x, &p.y}) {
      const char* axis = t == &p.x ? "x" : "y";
      VL_CHECK((*t)->dtype() == DType::F32, ErrorCode::DType, "attention: ", which, " position ", axis,
               " must be f32, got ", (*t)->describe());
      VL_CHECK((*t)->device() == q->device(), ErrorCode::Device, "attention: ", which, " position ", axis,
               " must be on ", q->device().str(), " with q, got ", (*t)->describe());
      VL_CHECK((*t)->ndim() == 1 && (*t)->shape()[0] == count, ErrorCode::Shape, "attention: ", which,
               " position ", axis, " must be [", count, "] (one per ", which, "), got ", (*t)->describe());
      inputs.push_back(contiguous(*t));
    }
    attrs.set(pre + "explicit", 1.0);
    return;
  }
  VL_CHECK(p.cols >= 1, ErrorCode::Argument, "attention: ", which, " grid cols must be a positive integer, got ",
           p.cols);
  VL_CHECK(std::isfinite(p.step) && std::isfinite(p.bias), ErrorCode::Argument, "attention: ", which,
           " grid step and bias must be finite numbers, got step ", p.step, " and bias ", p.bias);
  VL_CHECK(std::llabs(p.index_offset) <= (int64_t{1} << 40), ErrorCode::Argument, "attention: ", which,
           " grid indexOffset ", p.index_offset, " is out of range");
  attrs.set(pre + "explicit", 0.0)
      .set(pre + "cols", static_cast<double>(p.cols))
      .set(pre + "offset", static_cast<double>(p.index_offset))
      .set(pre + "step", p.step)
      .set(pre + "bias", p.bias);
}

}  // namespace

AttentionResult attention(const TensorPtr& q_in, const TensorPtr& k_in, const TensorPtr& v_in,
                          const AttentionOptions& o) {
  const struct {
    const TensorPtr& t;
    const char* name;
    const char* dims;
  } args[] = {{q_in, "q", "[B, N, heads, D]"}, {k_in, "k", "[B, M, heads, D]"}, {v_in, "v", "[B, M, heads, D]"}};
  for (const auto& a : args) {
    VL_CHECK(a.t->ndim() == 4, ErrorCode::Shape, "attention: ", a.name, " must be 4-D ", a.dims, ", got ",
             a.t->describe());
    VL_CHECK(a.t->dtype() == DType::F32, ErrorCode::DType, "attention: ", a.name,
             " must be f32 (the only dtype the attention kernels take for now), got ", a.t->describe());
    VL_CHECK(a.t->device() == q_in->device(), ErrorCode::Device, "attention: q, k and v must be on one device, got q ",
             q_in->describe(), " and ", a.name, " ", a.t->describe(), "; move one with .to(device)");
  }
  const Shape &qs = q_in->shape(), &ks = k_in->shape(), &vs = v_in->shape();
  VL_CHECK(ks == vs, ErrorCode::Shape, "attention: k and v must have the same shape [B, M, heads, D], got k ",
           k_in->describe(), " and v ", v_in->describe());
  static const char* dim_names[] = {"batch size", "", "head count", "head width"};
  for (int d : {0, 2, 3})
    VL_CHECK(qs[d] == ks[d], ErrorCode::Shape, "attention: q and k/v disagree on the ", dim_names[d], " (dim ", d,
             "): q ", q_in->describe(), " vs k ", k_in->describe());
  const int64_t B = qs[0], N = qs[1], H = qs[2], D = qs[3], M = ks[1];
  VL_CHECK(D % 4 == 0 && D >= kMinHeadDim && D <= kMaxHeadDim, ErrorCode::Shape,
           "attention: the head width D must be a multiple of 4 from ", kMinHeadDim, " to ", kMaxHeadDim,
           " (2D RoPE turns channels in groups of 4), got D = ", D, " in q ", q_in->describe());
  VL_CHECK(M >= 1 || N == 0 || B == 0 || H == 0, ErrorCode::Shape,
           "attention: needs at least one key (softmax over no keys is undefined), got k ", k_in->describe());
  const double scale = o.scale ? *o.scale : 1.0 / std::sqrt(static_cast<double>(D));
  VL_CHECK(std::isfinite(scale), ErrorCode::Argument, "attention: scale must be a finite number, got ", scale);

  Attrs attrs;
  std::vector<TensorPtr> inputs{rows_contiguous(q_in), rows_contiguous(k_in), rows_contiguous(v_in)};
  attrs.set("rope", o.rope ? 1.0 : 0.0).set("scale", scale);
  if (o.rope) {
    VL_CHECK(o.q_pos.has_value(), ErrorCode::Argument,
             "attention: RoPE needs the query positions (qPos: {x, y} or {grid: {cols, ...}}); pass rope: false to "
             "attend without rotation");
    add_positions(*o.q_pos, "query", "q_", N, q_in, attrs, inputs);
    if (o.k_pos) {
      add_positions(*o.k_pos, "key", "k_", M, q_in, attrs, inputs);
      attrs.set("k_same", 0.0);
    } else {
      VL_CHECK(M == N, ErrorCode::Argument, "attention: there are ", M, " keys but ", N,
               " queries, so the key positions (kPos) must be given");
      attrs.set("k_same", 1.0);
    }
  }

  AttentionResult r;
  r.out = empty_tensor({B, N, H * D}, DType::F32, q_in->device());
  if (o.return_lse) r.lse = empty_tensor({B, H, N}, DType::F32, q_in->device());
  if (r.out->numel() == 0) return r;
  std::vector<TensorPtr> outputs{r.out};
  if (r.lse) outputs.push_back(r.lse);
  launch("attention", inputs, outputs, std::move(attrs));
  return r;
}

}  // namespace ops
}  // namespace vl
