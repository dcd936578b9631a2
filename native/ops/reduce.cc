#include <algorithm>

#include "core/error.h"
#include "ops/ops.h"

namespace vl {
namespace ops {

TensorPtr sum(const TensorPtr& t, const std::vector<int64_t>& dims, bool keepdim) {
  const int n = t->ndim();
  std::vector<bool> reduce(n, dims.empty());
  for (int64_t d : dims) {
    const int64_t k = d < 0 ? d + n : d;
    VL_CHECK(k >= 0 && k < n, ErrorCode::Shape, "sum: dimension ", d, " is out of range for ", t->describe());
    VL_CHECK(!reduce[k], ErrorCode::Shape, "sum: dimension ", d, " is listed twice");
    reduce[k] = true;
  }
  // Kept dims first, reduced dims last: the kernel reduces a trailing block.
  std::vector<int64_t> order;
  Shape out_shape;
  for (int i = 0; i < n; ++i)
    if (!reduce[i]) order.push_back(i), out_shape.push_back(t->shape()[i]);
  for (int i = 0; i < n; ++i)
    if (reduce[i]) order.push_back(i);
  const DType out_dtype = dtype_is_float(t->dtype()) ? t->dtype() : DType::I64;
  TensorPtr out = empty_tensor(out_shape, out_dtype, t->device());
  if (out->numel() > 0) {
    if (t->numel() == 0) {
      launch("fill", {}, {out}, Attrs().set("value", 0.0));
    } else {
      launch("sum", {view_permute(t, order)}, {out});
    }
  }
  if (keepdim) {
    Shape kept(n);
    for (int i = 0, j = 0; i < n; ++i) kept[i] = reduce[i] ? 1 : out_shape[j++];
    return view_reshape(out, kept);
  }
  return out;
}

}  // namespace ops
}  // namespace vl
