// Launchers of the transformer building blocks: normalization, softmax,
// activations, window partition/merge.
#pragma once
#include <string>
#include <vector>

#include "core/tensor.h"

namespace vl {
namespace ops {

// y = LN(x) over the last dim; with stats, also mean and rstd ([...] f32) for backward.
std::vector<TensorPtr> layer_norm(const TensorPtr& x, const TensorPtr& weight, const TensorPtr& bias, double eps,
                                  bool stats);
// s = x + r; y = LN(s). Returns {s, y} (+ mean, rstd with stats).
std::vector<TensorPtr> add_layer_norm(const TensorPtr& x, const TensorPtr& r, const TensorPtr& weight,
                                      const TensorPtr& bias, double eps, bool stats);
// Softmax over the last dim; with lse, also the log-sum-exp per row.
std::vector<TensorPtr> softmax(const TensorPtr& x, bool lse);
// "silu" | "gelu"
TensorPtr activation(const std::string& kind, const TensorPtr& x);
// Gradients of layer_norm from the forward's mean and rstd: {dx} without a
// weight, {dx, dweight, dbias} with one (dweight, dbias [C] summed over rows).
std::vector<TensorPtr> layer_norm_backward(const TensorPtr& dy, const TensorPtr& x, const TensorPtr& mean,
                                           const TensorPtr& rstd, const TensorPtr& weight);
// dx of "silu" | "gelu" given dy and the forward's input x.
TensorPtr activation_backward(const std::string& kind, const TensorPtr& dy, const TensorPtr& x);
// a [..., 2H] = [a1 | a2] -> silu(a1) * a2 [..., H]; the backward gives da [..., 2H].
TensorPtr swiglu_gate(const TensorPtr& a);
TensorPtr swiglu_gate_backward(const TensorPtr& dh, const TensorPtr& a);
// x [B, H*W, C] -> [B*nh*nw, ws*ws, C] (zero padding); merge is the inverse (crops).
TensorPtr window_partition(const TensorPtr& x, int64_t height, int64_t width, int64_t window);
TensorPtr window_merge(const TensorPtr& windows, int64_t batch, int64_t height, int64_t width, int64_t window);

}  // namespace ops
}  // namespace vl
