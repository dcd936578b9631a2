// Launchers of the classification losses and their gradients. Losses are
// per row (per element for BCE); the caller reduces them (mean, sum) and
// passes the matching per-row weights as dloss to the backward.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace vl {
namespace ops {

// logits [B, K] f32, labels [B] i32/i64 -> {loss [B], lse [B]}.
std::vector<TensorPtr> cross_entropy(const TensorPtr& logits, const TensorPtr& labels, double smoothing);
// -> dlogits [B, K] = dloss_i * (softmax_ik - (1 - eps) [k = y_i] - eps / K)
TensorPtr cross_entropy_backward(const TensorPtr& dloss, const TensorPtr& logits, const TensorPtr& lse,
                                 const TensorPtr& labels, double smoothing);
// logits, targets [B, K] f32 -> {loss [B], lse [B]}
std::vector<TensorPtr> soft_cross_entropy(const TensorPtr& logits, const TensorPtr& targets);
TensorPtr soft_cross_entropy_backward(const TensorPtr& dloss, const TensorPtr& logits, const TensorPtr& lse,
                                      const TensorPtr& targets);
// Elementwise binary cross-entropy on logits (any shape).
TensorPtr bce_with_logits(const TensorPtr& logits, const TensorPtr& targets);
TensorPtr bce_with_logits_backward(const TensorPtr& dloss, const TensorPtr& logits, const TensorPtr& targets);

}  // namespace ops
}  // namespace vl
