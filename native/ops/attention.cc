#include "ops/attention.h"

#include <array>
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
void add_positions(const char* fn, const RopePositions& p, const char* which, const char* prefix, int64_t count,
                   const TensorPtr& q, Attrs& attrs, std::vector<TensorPtr>& inputs) {
  const std::string pre(prefix);
  if (p.x || p.y) {
    VL_CHECK(p.x && p.y, ErrorCode::Argument, fn, ": ", which, " positions need both x and y");
    for (const TensorPtr* t : {&p.x, &p.y}) {
      const char* axis = t == &p.x ? "x" : "y";
      VL_CHECK((*t)->dtype() == DType::F32, ErrorCode::DType, fn, ": ", which, " position ", axis,
               " must be f32, got ", (*t)->describe());
      VL_CHECK((*t)->device() == q->device(), ErrorCode::Device, fn, ": ", which, " position ", axis,
               " must be on ", q->device().str(), " with q, got ", (*t)->describe());
      VL_CHECK((*t)->ndim() == 1 && (*t)->shape()[0] == count, ErrorCode::Shape, fn, ": ", which,
               " position ", axis, " must be [", count, "] (one per ", which, "), got ", (*t)->describe());
      inputs.push_back(contiguous(*t));
    }
    attrs.set(pre + "explicit", 1.0);
    return;
  }
  VL_CHECK(p.cols >= 1, ErrorCode::Argument, fn, ": ", which, " grid cols must be a positive integer, got ",
           p.cols);
  VL_CHECK(std::isfinite(p.step) && std::isfinite(p.bias), ErrorCode::Argument, fn, ": ", which,
           " grid step and bias must be finite numbers, got step ", p.step, " and bias ", p.bias);
  VL_CHECK(std::llabs(p.index_offset) <= (int64_t{1} << 40), ErrorCode::Argument, fn, ": ", which,
           " grid indexOffset ", p.index_offset, " is out of range");
  attrs.set(pre + "explicit", 0.0)
      .set(pre + "cols", static_cast<double>(p.cols))
      .set(pre + "offset", static_cast<double>(p.index_offset))
      .set(pre + "step", p.step)
      .set(pre + "bias", p.bias);
}

// Checks q, k, v as attention() takes them (rank, dtype, one device, agreeing
// dims, head width, at least one key) and returns {B, N, heads, D, M}.
std::array<int64_t, 5> check_qkv(const char* fn, const TensorPtr& q_in, const TensorPtr& k_in, const TensorPtr& v_in) {
  const struct {
    const TensorPtr& t;
    const char* name;
    const char* dims;
  } args[] = {{q_in, "q", "[B, N, heads, D]"}, {k_in, "k", "[B, M, heads, D]"}, {v_in, "v", "[B, M, heads, D]"}};
  for (const auto& a : args) {
    VL_CHECK(a.t->ndim() == 4, ErrorCode::Shape, fn, ": ", a.name, " must be 4-D ", a.dims, ", got ",
             a.t->describe());
    VL_CHECK(a.t->dtype() == DType::F32, ErrorCode::DType, fn, ": ", a.name,
             " must be f32 (the only dtype the attention kernels take for now), got ", a.t->describe());
    VL_CHECK(a.t->device() == q_in->device(), ErrorCode::Device, fn, ": q, k and v must be on one device, got q ",
             q_in->describe(), " and ", a.name, " ", a.t->describe(), "; move one with .to(device)");
  }
  const Shape &qs = q_in->shape(), &ks = k_in->shape(), &vs = v_in->shape();
  VL_CHECK(ks == vs, ErrorCode::Shape, fn, ": k and v must have the same shape [B, M, heads, D], got k ",
           k_in->describe(), " and v ", v_in->describe());
  static const char* dim_names[] = {"batch size", "", "head count", "head width"};
  for (int d : {0, 2, 3})
    VL_CHECK(qs[d] == ks[d], ErrorCode::Shape, fn, ": q and k/v disagree on the ", dim_names[d], " (dim ", d,
             "): q ", q_in->describe(), " vs k ", k_in->describe());
  const int64_t B = qs[0], N = qs[1], H = qs[2], D = qs[3], M = ks[1];
  VL_CHECK(D % 4 == 0 && D >= kMinHeadDim && D <= kMaxHeadDim, ErrorCode::Shape, fn,
           ": the head width D must be a multiple of 4 from ", kMinHeadDim, " to ", kMaxHeadDim,
           " (2D RoPE turns channels in groups of 4), got D = ", D, " in q ", q_in->describe());
  VL_CHECK(M >= 1 || N == 0 || B == 0 || H == 0, ErrorCode::Shape, fn,
           ": needs at least one key (softmax over no keys is undefined), got k ", k_in->describe());
  return {B, N, H, D, M};
}

// The score scale (default 1/sqrt(D)), RoPE flag and positions as kernel attributes and inputs.
void add_rope(const char* fn, const std::optional<RopePositions>& q_pos, const std::optional<RopePositions>& k_pos,
              bool rope, const std::optional<double>& scale_opt, const TensorPtr& q, int64_t N, int64_t M,
              int64_t D, Attrs& attrs, std::vector<TensorPtr>& inputs) {
  const double scale = scale_opt ? *scale_opt : 1.0 / std::sqrt(static_cast<double>(D));
  VL_CHECK(std::isfinite(scale), ErrorCode::Argument, fn, ": scale must be a finite number, got ", scale);
  attrs.set("rope", rope ? 1.0 : 0.0).set("scale", scale);
  if (!rope) return;
  VL_CHECK(q_pos.has_value(), ErrorCode::Argument, fn,
           ": RoPE needs the query positions (qPos: {x, y} or {grid: {cols, ...}}); pass rope: false to "
           "attend without rotation");
  add_positions(fn, *q_pos, "query", "q_", N, q, attrs, inputs);
  if (k_pos) {
    add_positions(fn, *k_pos, "key", "k_", M, q, attrs, inputs);
    attrs.set("k_same", 0.0);
  } else {
    VL_CHECK(M == N, ErrorCode::Argument, fn, ": there are ", M, " keys but ", N,
             " queries, so the key positions (kPos) must be given");
    attrs.set("k_same", 1.0);
  }
}

}  // namespace

AttentionResult attention(const TensorPtr& q_in, const TensorPtr& k_in, const TensorPtr& v_in,
                          const AttentionOptions& o) {
  const std::array<int64_t, 5> dims = check_qkv("attention", q_in, k_in, v_in);
  const int64_t B = dims[0], N = dims[1], H = dims[2], D = dims[3], M = dims[4];
  Attrs attrs;
  std::vector<TensorPtr> inputs{rows_contiguous(q_in), rows_contiguous(k_in), rows_contiguous(v_in)};
  add_rope("attention", o.q_pos, o.k_pos, o.rope, o.scale, q_in, N, M, D, attrs, inputs);

  AttentionResult r;
  r.out = empty_tensor({B, N, H * D}, DType::F32, q_in->device());
  if (o.return_lse) r.lse = empty_tensor({B, H, N}, DType::F32, q_in->device());
  if (r.out->numel() == 0) return r;
  std::vector<TensorPtr> outputs{r.out};
  if (r.lse) outputs.push_back(r.lse);
  attrs.set("wtype", static_cast<double>(o.precision));
  launch("attention", inputs, outputs, std::move(attrs));
  return r;
}

AttentionGrads attention_backward(const TensorPtr& dout, const TensorPtr& q, const TensorPtr& k, const TensorPtr& v,
                                  const TensorPtr& out, const TensorPtr& lse, const AttentionBackwardOptions& o) {
  constexpr const char* fn = "attentionBackward";
  const std::array<int64_t, 5> dims = check_qkv(fn, q, k, v);
  const int64_t B = dims[0], N = dims[1], H = dims[2], D = dims[3], M = dims[4];
  const Shape rows_shape{B, N, H * D}, lse_shape{B, H, N};
  const struct {
    const TensorPtr& t;
    const char* name;
    const Shape& shape;
    const char* dims;
  } args[] = {{dout, "dOut", rows_shape, "[B, N, heads·D], like the forward's output"},
              {out, "out", rows_shape, "[B, N, heads·D], the forward's output"},
              {lse, "lse", lse_shape, "[B, heads, N], the forward's log-sum-exp"}};
  for (const auto& a : args) {
    VL_CHECK(a.t->dtype() == DType::F32, ErrorCode::DType, fn, ": ", a.name, " must be f32, got ", a.t->describe());
    VL_CHECK(a.t->device() == q->device(), ErrorCode::Device, fn, ": ", a.name, " must be on ", q->device().str(),
             " with q, got ", a.t->describe(), "; move one with .to(device)");
    VL_CHECK(a.t->shape() == a.shape, ErrorCode::Shape, fn, ": ", a.name, " must be ", shape_str(a.shape), " ",
             a.dims, " for q ", q->describe(), " and k ", k->describe(), ", got ", a.t->describe());
  }
  VL_CHECK(o.layout != AttentionGradLayout::PackedQKV || M == N, ErrorCode::Shape, fn,
           ": packed 'qkv' gradients need as many keys as queries, got ", N, " queries (q ", q->describe(),
           ") and ", M, " keys (k ", k->describe(), "); use packed 'kv' for a separate key/value projection");

  Attrs attrs;
  // The kernel reads rows with their last dim contiguous, lse as [B][heads][N].
  auto last_contiguous = [](const TensorPtr& t) {
    return t->shape().back() <= 1 || t->strides().back() == 1 ? t : contiguous(t);
  };
  std::vector<TensorPtr> inputs{last_contiguous(dout), rows_contiguous(q), rows_contiguous(k), rows_contiguous(v),
                                last_contiguous(out), contiguous(lse)};
  add_rope(fn, o.q_pos, o.k_pos, o.rope, o.scale, q, N, M, D, attrs, inputs);

  const Device device = q->device();
  const int64_t C = H * D;
  AttentionGrads g;
  auto views = [&](int64_t T, int64_t parts) {
    // [B, T, parts·C] and its part i as [B, T, heads, D].
    g.packed = empty_tensor({B, T, parts * C}, DType::F32, device);
    std::vector<TensorPtr> v;
    for (int64_t i = 0; i < parts; ++i)
      v.push_back(view_as_strided(g.packed, {B, T, H, D}, {T * parts * C, parts * C, D, 1}, i * C));
    return v;
  };
  if (o.layout == AttentionGradLayout::PackedQKV) {
    const auto v3 = views(N, 3);
    g.dq = v3[0], g.dk = v3[1], g.dv = v3[2];
  } else {
    g.dq = empty_tensor({B, N, H, D}, DType::F32, device);
    if (o.layout == AttentionGradLayout::PackedKV) {
      const auto v2 = views(M, 2);
      g.dk = v2[0], g.dv = v2[1];
    } else {
      g.dk = empty_tensor({B, M, H, D}, DType::F32, device);
      g.dv = empty_tensor({B, M, H, D}, DType::F32, device);
    }
  }
  if (g.dk->numel() == 0) return g;  // nothing to compute (and dq is empty too)
  if (g.dq->numel() == 0) {
    // No queries: nothing flows back to the keys and values.
    const TensorPtr zeros = full(g.packed ? g.packed->shape() : g.dk->shape(), DType::F32, device, 0.0);
    if (g.packed) {
      g.dk = view_as_strided(zeros, g.dk->shape(), g.dk->strides(), g.dk->offset());
      g.dv = view_as_strided(zeros, g.dv->shape(), g.dv->strides(), g.dv->offset());
      g.packed = zeros;
    } else {
      g.dk = zeros;
      g.dv = full(g.dv->shape(), DType::F32, device, 0.0);
    }
    return g;
  }
  attrs.set("wtype", static_cast<double>(o.precision));
  launch("attention_backward", inputs, {g.dq, g.dk, g.dv}, std::move(attrs));
  return g;
}

}  // namespace ops
}  // namespace vl
