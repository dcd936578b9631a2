#include "ops/loss.h"

#include <cmath>

#include "core/dispatch.h"
#include "core/error.h"
#include "ops/ops.h"

namespace vl {
namespace ops {
namespace {

TensorPtr f32_input(const TensorPtr& t, const char* op, const char* what) {
  VL_CHECK(t->dtype() == DType::F32, ErrorCode::DType, op, ": ", what, " must be f32, got ", t->describe());
  return contiguous(t);
}

// Class logits [B, K] with B, K >= 1.
TensorPtr logits_input(const TensorPtr& t, const char* op) {
  VL_CHECK(t->ndim() == 2 && t->shape()[0] >= 1 && t->shape()[1] >= 1, ErrorCode::Shape, op,
           ": expected logits [B, K] with B >= 1 rows and K >= 1 classes, got ", t->describe());
  return f32_input(t, op, "logits");
}

// An f32 tensor of a given shape (targets, dloss, lse) that goes with `like`.
TensorPtr matching(const TensorPtr& t, const Shape& shape, const char* op, const char* what, const TensorPtr& like) {
  VL_CHECK(t->shape() == shape, ErrorCode::Shape, op, ": ", what, " must have shape ", shape_str(shape),
           " to match the logits ", like->describe(), ", got ", t->describe());
  return f32_input(t, op, what);
}

TensorPtr labels_input(const TensorPtr& t, int64_t B, const char* op, const TensorPtr& logits) {
  VL_CHECK(t->dtype() == DType::I32 || t->dtype() == DType::I64, ErrorCode::DType, op,
           ": labels must be i32 or i64 class indices, got ", t->describe());
  VL_CHECK(t->ndim() == 1 && t->shape()[0] == B, ErrorCode::Shape, op, ": labels must have shape [", B,
           "] to match the logits ", logits->describe(), ", got ", t->describe());
  return contiguous(t);
}

void check_smoothing(double eps, const char* op) {
  VL_CHECK(std::isfinite(eps) && eps >= 0 && eps <= 1, ErrorCode::Argument, op,
           ": labelSmoothing must be in [0, 1], got ", eps);
}

}  // namespace

std::vector<TensorPtr> cross_entropy(const TensorPtr& logits_in, const TensorPtr& labels_in, double smoothing) {
  const char* op = "crossEntropyForward";
  const TensorPtr logits = logits_input(logits_in, op);
  const int64_t B = logits->shape()[0];
  const TensorPtr labels = labels_input(labels_in, B, op, logits);
  check_smoothing(smoothing, op);
  std::vector<TensorPtr> out{empty_tensor({B}, DType::F32, logits->device()),
                             empty_tensor({B}, DType::F32, logits->device())};
  launch("cross_entropy", {logits, labels}, out, Attrs().set("smoothing", smoothing));
  return out;
}

TensorPtr cross_entropy_backward(const TensorPtr& dloss_in, const TensorPtr& logits_in, const TensorPtr& lse_in,
                                 const TensorPtr& labels_in, double smoothing) {
  const char* op = "crossEntropyBackward";
  const TensorPtr logits = logits_input(logits_in, op);
  const int64_t B = logits->shape()[0];
  const TensorPtr dloss = matching(dloss_in, {B}, op, "dloss", logits);
  const TensorPtr lse = matching(lse_in, {B}, op, "lse", logits);
  const TensorPtr labels = labels_input(labels_in, B, op, logits);
  check_smoothing(smoothing, op);
  TensorPtr out = empty_tensor(logits->shape(), DType::F32, logits->device());
  launch("cross_entropy_backward", {dloss, logits, lse, labels}, {out}, Attrs().set("smoothing", smoothing));
  return out;
}

std::vector<TensorPtr> soft_cross_entropy(const TensorPtr& logits_in, const TensorPtr& targets_in) {
  const char* op = "softCrossEntropyForward";
  const TensorPtr logits = logits_input(logits_in, op);
  const TensorPtr targets = matching(targets_in, logits->shape(), op, "targets", logits);
  const int64_t B = logits->shape()[0];
  std::vector<TensorPtr> out{empty_tensor({B}, DType::F32, logits->device()),
                             empty_tensor({B}, DType::F32, logits->device())};
  launch("soft_cross_entropy", {logits, targets}, out);
  return out;
}

TensorPtr soft_cross_entropy_backward(const TensorPtr& dloss_in, const TensorPtr& logits_in, const TensorPtr& lse_in,
                                      const TensorPtr& targets_in) {
  const char* op = "softCrossEntropyBackward";
  const TensorPtr logits = logits_input(logits_in, op);
  const int64_t B = logits->shape()[0];
  const TensorPtr dloss = matching(dloss_in, {B}, op, "dloss", logits);
  const TensorPtr lse = matching(lse_in, {B}, op, "lse", logits);
  const TensorPtr targets = matching(targets_in, logits->shape(), op, "targets", logits);
  TensorPtr out = empty_tensor(logits->shape(), DType::F32, logits->device());
  launch("soft_cross_entropy_backward", {dloss, logits, lse, targets}, {out});
  return out;
}

TensorPtr bce_with_logits(const TensorPtr& logits_in, const TensorPtr& targets_in) {
  const char* op = "bceWithLogitsForward";
  const TensorPtr logits = f32_input(logits_in, op, "logits");
  const TensorPtr targets = matching(targets_in, logits->shape(), op, "targets", logits);
  TensorPtr out = empty_tensor(logits->shape(), DType::F32, logits->device());
  if (out->numel() > 0) launch("bce_with_logits", {logits, targets}, {out});
  return out;
}

TensorPtr bce_with_logits_backward(const TensorPtr& dloss_in, const TensorPtr& logits_in,
                                   const TensorPtr& targets_in) {
  const char* op = "bceWithLogitsBackward";
  const TensorPtr logits = f32_input(logits_in, op, "logits");
  const TensorPtr dloss = matching(dloss_in, logits->shape(), op, "dloss", logits);
  const TensorPtr targets = matching(targets_in, logits->shape(), op, "targets", logits);
  TensorPtr out = empty_tensor(logits->shape(), DType::F32, logits->device());
  if (out->numel() > 0) launch("bce_with_logits_backward", {dloss, logits, targets}, {out});
  return out;
}

}  // namespace ops
}  // namespace vl
