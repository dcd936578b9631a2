#include "ops/nn.h"

#include "core/dispatch.h"
#include "core/error.h"
#include "ops/ops.h"

namespace vl {
namespace ops {
namespace {

void check_f32(const TensorPtr& t, const char* op, const char* what) {
  VL_CHECK(t->dtype() == DType::F32, ErrorCode::DType, op, ": ", what, " must be f32, got ", t->describe());
}

// Rows over the last dim must be dense; anything else is copied once here.
TensorPtr rows_of(const TensorPtr& x, const char* op) {
  VL_CHECK(x->ndim() >= 1, ErrorCode::Shape, op, ": expected at least 1 dimension, got ", x->describe());
  check_f32(x, op, "the input");
  return contiguous(x);
}

void check_affine(const TensorPtr& p, int64_t C, const TensorPtr& x, const char* op, const char* what) {
  if (!p) return;
  check_f32(p, op, what);
  VL_CHECK(p->ndim() == 1 && p->shape()[0] == C, ErrorCode::Shape, op, ": ", what, " must have shape [", C,
           "] to match ", x->describe(), ", got ", p->describe());
  VL_CHECK(p->device() == x->device(), ErrorCode::Device, op, ": ", what, " is on ", p->device().str(),
           " but the input is on ", x->device().str());
}

Shape row_shape(const TensorPtr& x) { return Shape(x->shape().begin(), x->shape().end() - 1); }

// A tensor that must match `like` in shape (a gradient, a statistic): f32, copied once if strided.
TensorPtr f32_like(const TensorPtr& t, const Shape& shape, const char* op, const char* what, const TensorPtr& like) {
  check_f32(t, op, what);
  VL_CHECK(t->shape() == shape, ErrorCode::Shape, op, ": ", what, " must have shape ", shape_str(shape), " to match ",
           like->describe(), ", got ", t->describe());
  return contiguous(t);
}

// The SwiGLU pre-activations [..., 2H] and their H.
TensorPtr gate_input(const TensorPtr& a_in, const char* op) {
  const TensorPtr a = rows_of(a_in, op);
  VL_CHECK(a->shape().back() % 2 == 0, ErrorCode::Shape, op,
           ": expected the pre-activations [..., 2H] (the a1 = x W1^T half, then a2 = x W2^T) with an even last "
           "dimension, got ",
           a->describe());
  return a;
}

}  // namespace

std::vector<TensorPtr> layer_norm(const TensorPtr& x_in, const TensorPtr& weight, const TensorPtr& bias, double eps,
                                  bool stats) {
  const TensorPtr x = rows_of(x_in, "layerNorm");
  const int64_t C = x->shape().back();
  check_affine(weight, C, x, "layerNorm", "weight");
  check_affine(bias, C, x, "layerNorm", "bias");
  VL_CHECK(eps > 0, ErrorCode::Argument, "layerNorm: eps must be positive, got ", eps);
  std::vector<TensorPtr> out{empty_tensor(x->shape(), DType::F32, x->device())};
  if (stats) {
    out.push_back(empty_tensor(row_shape(x), DType::F32, x->device()));
    out.push_back(empty_tensor(row_shape(x), DType::F32, x->device()));
  }
  std::vector<TensorPtr> in{x};
  if (weight) in.push_back(contiguous(weight));
  if (bias) in.push_back(contiguous(bias));
  if (x->numel() > 0)
    launch("layer_norm", in, out,
           Attrs().set("eps", eps).set("has_weight", weight ? 1.0 : 0.0).set("has_bias", bias ? 1.0 : 0.0));
  return out;
}

std::vector<TensorPtr> add_layer_norm(const TensorPtr& x_in, const TensorPtr& r_in, const TensorPtr& weight,
                                      const TensorPtr& bias, double eps, bool stats) {
  const TensorPtr x = rows_of(x_in, "addLayerNorm");
  const TensorPtr r = rows_of(r_in, "addLayerNorm");
  VL_CHECK(x->shape() == r->shape(), ErrorCode::Shape, "addLayerNorm: the residual ", r->describe(),
           " must have the shape of the input ", x->describe());
  const int64_t C = x->shape().back();
  check_affine(weight, C, x, "addLayerNorm", "weight");
  check_affine(bias, C, x, "addLayerNorm", "bias");
  VL_CHECK(eps > 0, ErrorCode::Argument, "addLayerNorm: eps must be positive, got ", eps);
  std::vector<TensorPtr> out{empty_tensor(x->shape(), DType::F32, x->device()),
                             empty_tensor(x->shape(), DType::F32, x->device())};
  if (stats) {
    out.push_back(empty_tensor(row_shape(x), DType::F32, x->device()));
    out.push_back(empty_tensor(row_shape(x), DType::F32, x->device()));
  }
  std::vector<TensorPtr> in{x, r};
  if (weight) in.push_back(contiguous(weight));
  if (bias) in.push_back(contiguous(bias));
  if (x->numel() > 0)
    launch("add_layer_norm", in, out,
           Attrs().set("eps", eps).set("has_weight", weight ? 1.0 : 0.0).set("has_bias", bias ? 1.0 : 0.0));
  return out;
}

std::vector<TensorPtr> softmax(const TensorPtr& x_in, bool lse) {
  const TensorPtr x = rows_of(x_in, "softmax");
  std::vector<TensorPtr> out{empty_tensor(x->shape(), DType::F32, x->device())};
  if (lse) out.push_back(empty_tensor(row_shape(x), DType::F32, x->device()));
  if (x->numel() > 0) launch("softmax", {x}, out);
  return out;
}

TensorPtr activation(const std::string& kind, const TensorPtr& x_in) {
  VL_CHECK(kind == "silu" || kind == "gelu", ErrorCode::Argument, "unknown activation '", kind,
           "': expected silu or gelu");
  check_f32(x_in, kind.c_str(), "the input");
  const TensorPtr x = contiguous(x_in);
  TensorPtr out = empty_tensor(x->shape(), DType::F32, x->device());
  if (x->numel() > 0) launch(kind, {x}, {out});
  return out;
}

std::vector<TensorPtr> layer_norm_backward(const TensorPtr& dy_in, const TensorPtr& x_in, const TensorPtr& mean_in,
                                           const TensorPtr& rstd_in, const TensorPtr& weight) {
  const char* op = "layerNormBackward";
  const TensorPtr x = rows_of(x_in, op);
  const TensorPtr dy = f32_like(dy_in, x->shape(), op, "dy", x);
  const TensorPtr mean = f32_like(mean_in, row_shape(x), op, "mean", x);
  const TensorPtr rstd = f32_like(rstd_in, row_shape(x), op, "rstd", x);
  const int64_t C = x->shape().back();
  check_affine(weight, C, x, op, "weight");
  std::vector<TensorPtr> out{empty_tensor(x->shape(), DType::F32, x->device())};
  if (weight && x->numel() == 0) {  // no rows: the parameter gradients are zeros
    out.push_back(full({C}, DType::F32, x->device(), 0.0));
    out.push_back(full({C}, DType::F32, x->device(), 0.0));
    return out;
  }
  if (weight) {
    out.push_back(empty_tensor({C}, DType::F32, x->device()));
    out.push_back(empty_tensor({C}, DType::F32, x->device()));
  }
  std::vector<TensorPtr> in{dy, x, mean, rstd};
  if (weight) in.push_back(contiguous(weight));
  if (x->numel() > 0) launch("layer_norm_backward", in, out);
  return out;
}

TensorPtr activation_backward(const std::string& kind, const TensorPtr& dy_in, const TensorPtr& x_in) {
  VL_CHECK(kind == "silu" || kind == "gelu", ErrorCode::Argument, "unknown activation '", kind,
           "': expected silu or gelu");
  const std::string name = kind + "Backward";
  check_f32(x_in, name.c_str(), "x");
  const TensorPtr x = contiguous(x_in);
  const TensorPtr dy = f32_like(dy_in, x->shape(), name.c_str(), "dy", x);
  TensorPtr out = empty_tensor(x->shape(), DType::F32, x->device());
  if (x->numel() > 0) launch(kind + "_backward", {dy, x}, {out});
  return out;
}

TensorPtr swiglu_gate(const TensorPtr& a_in) {
  const TensorPtr a = gate_input(a_in, "swigluGate");
  Shape shape = a->shape();
  shape.back() /= 2;
  TensorPtr out = empty_tensor(shape, DType::F32, a->device());
  if (out->numel() > 0) launch("swiglu_gate", {a}, {out});
  return out;
}

TensorPtr swiglu_gate_backward(const TensorPtr& dh_in, const TensorPtr& a_in) {
  const TensorPtr a = gate_input(a_in, "swigluGateBackward");
  Shape shape = a->shape();
  shape.back() /= 2;
  const TensorPtr dh = f32_like(dh_in, shape, "swigluGateBackward", "dh", a);
  TensorPtr out = empty_tensor(a->shape(), DType::F32, a->device());
  if (out->numel() > 0) launch("swiglu_gate_backward", {dh, a}, {out});
  return out;
}

namespace {
Attrs window_attrs(int64_t b, int64_t h, int64_t w, int64_t c, int64_t ws) {
  return Attrs()
      .set("batch", static_cast<double>(b))
      .set("height", static_cast<double>(h))
      .set("width", static_cast<double>(w))
      .set("channels", static_cast<double>(c))
      .set("window", static_cast<double>(ws));
}
}  // namespace

TensorPtr window_partition(const TensorPtr& x_in, int64_t height, int64_t width, int64_t window) {
  VL_CHECK(x_in->ndim() == 3, ErrorCode::Shape, "windowPartition: expected tokens [B, H*W, C], got ", x_in->describe());
  VL_CHECK(height > 0 && width > 0 && window > 0, ErrorCode::Argument,
           "windowPartition: height, width and window must be positive, got ", height, ", ", width, ", ", window);
  VL_CHECK(x_in->shape()[1] == height * width, ErrorCode::Shape, "windowPartition: ", x_in->describe(), " has ",
           x_in->shape()[1], " tokens but a ", height, "x", width, " map has ", height * width);
  const TensorPtr x = contiguous(x_in);
  const int64_t B = x->shape()[0], C = x->shape()[2];
  const int64_t nh = (height + window - 1) / window, nw = (width + window - 1) / window;
  TensorPtr out = empty_tensor({B * nh * nw, window * window, C}, x->dtype(), x->device());
  if (out->numel() > 0) launch("window_partition", {x}, {out}, window_attrs(B, height, width, C, window));
  return out;
}

TensorPtr window_merge(const TensorPtr& w_in, int64_t batch, int64_t height, int64_t width, int64_t window) {
  VL_CHECK(batch > 0 && height > 0 && width > 0 && window > 0, ErrorCode::Argument,
           "windowMerge: batch, height, width and window must be positive");
  const int64_t nh = (height + window - 1) / window, nw = (width + window - 1) / window;
  VL_CHECK(w_in->ndim() == 3 && w_in->shape()[0] == batch * nh * nw && w_in->shape()[1] == window * window,
           ErrorCode::Shape, "windowMerge: expected windows [", batch * nh * nw, ", ", window * window,
           ", C] for a batch of ", batch, " ", height, "x", width, " maps with window ", window, ", got ",
           w_in->describe());
  const TensorPtr w = contiguous(w_in);
  const int64_t C = w->shape()[2];
  TensorPtr out = empty_tensor({batch, height * width, C}, w->dtype(), w->device());
  if (out->numel() > 0) launch("window_merge", {w}, {out}, window_attrs(batch, height, width, C, window));
  return out;
}

}  // namespace ops
}  // namespace vl
