#include "core/error.h"
#include "ops/ops.h"

namespace vl {
namespace ops {

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    VL_CHECK(da == db || da == 1 || db == 1, ErrorCode::Shape, op, ": shapes ", shape_str(a), " and ",
             shape_str(b), " cannot be broadcast together (dimension ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {
// A view of `t` with shape `shape`: broadcast dims get stride 0.
TensorPtr expand(const TensorPtr& t, const Shape& shape) {
  if (t->shape() == shape) return t;
  const size_t lead = shape.size() - t->shape().size();
  Shape strides(shape.size(), 0);
  for (size_t i = 0; i < t->shape().size(); ++i)
    strides[lead + i] = t->shape()[i] == 1 ? 0 : t->strides()[i];
  return std::make_shared<TensorImpl>(t->storage(), t->dtype(), shape, strides, t->offset());
}
}  // namespace

TensorPtr binary(const std::string& op, const TensorPtr& a, const TensorPtr& b) {
  VL_CHECK(op == "add" || op == "sub" || op == "mul" || op == "div", ErrorCode::Argument, "unknown binary op '", op,
           "': expected add, sub, mul or div");
  VL_CHECK(a->dtype() == b->dtype(), ErrorCode::DType, op, ": dtypes differ (", a->describe(), " and ",
           b->describe(), "); convert one with .to(dtype)");
  VL_CHECK(a->device() == b->device(), ErrorCode::Device, op, ": tensors are on different devices (",
           a->describe(), " and ", b->describe(), "); move one with .to(device)");
  const Shape shape = broadcast_shapes(a->shape(), b->shape(), op.c_str());
  TensorPtr out = empty_tensor(shape, a->dtype(), a->device());
  if (out->numel() > 0) launch(op, {expand(a, shape), expand(b, shape)}, {out});
  return out;
}

}  // namespace ops
}  // namespace vl
