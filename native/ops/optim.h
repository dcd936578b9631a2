// Launchers of the in-place optimizer updates and training-loop helpers.
// Every tensor they update must be f32, contiguous and of one shape and
// device: nothing is copied, since an update of a copy would be lost.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace vl {
namespace ops {

struct AdamHyper {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;  // 1 for the first update
};

// torch.optim.AdamW's update (decoupled weight decay), in place.
void adamw_update(const TensorPtr& param, const TensorPtr& grad, const TensorPtr& exp_avg,
                  const TensorPtr& exp_avg_sq, const AdamHyper& h);

struct SgdHyper {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, first_step;
};

// torch.optim.SGD's update; momentum_buffer may be null when momentum is 0.
void sgd_update(const TensorPtr& param, const TensorPtr& grad, const TensorPtr& momentum_buffer, const SgdHyper& h);

// LAMB: Adam moments with bias correction, u = m_hat / (sqrt(v_hat) + eps) + wd p,
// p -= lr r u with the trust ratio r = |p| / |u| (1 when either is 0).
void lamb_update(const TensorPtr& param, const TensorPtr& grad, const TensorPtr& exp_avg,
                 const TensorPtr& exp_avg_sq, const AdamHyper& h);

// Multi-tensor forms: one update of every tensor of the lists (tensor i of
// each list belongs to parameter i) in one kernel call per step. Results are
// the bits of the per-tensor updates. The lists must have one length, each
// tensor i the shape of params[i], and all of them one device. Hyper-
// parameters are common except those below, one per tensor. found_inf
// (optional, one f32 element on that device) is read by the kernels: when
// it is not 0 they change nothing (a loss-scaled step that overflowed).
struct AdamMultiHyper {
  double lr, beta1, beta2, eps;
  std::vector<double> weight_decay;  // 0 for the parameters without decay
  std::vector<int64_t> step;         // each parameter's update count, from 1
};
void adamw_update_multi(const std::vector<TensorPtr>& params, const std::vector<TensorPtr>& grads,
                        const std::vector<TensorPtr>& exp_avgs, const std::vector<TensorPtr>& exp_avg_sqs,
                        const AdamMultiHyper& h, const TensorPtr& found_inf = nullptr);
void lamb_update_multi(const std::vector<TensorPtr>& params, const std::vector<TensorPtr>& grads,
                       const std::vector<TensorPtr>& exp_avgs, const std::vector<TensorPtr>& exp_avg_sqs,
                       const AdamMultiHyper& h, const TensorPtr& found_inf = nullptr);

struct SgdMultiHyper {
  double lr, momentum, dampening;
  bool nesterov;
  std::vector<double> weight_decay;
  std::vector<bool> first_step;
};
// momentum_buffers: one per parameter, or empty when momentum is 0.
void sgd_update_multi(const std::vector<TensorPtr>& params, const std::vector<TensorPtr>& grads,
                      const std::vector<TensorPtr>& momentum_buffers, const SgdMultiHyper& h,
                      const TensorPtr& found_inf = nullptr);

// The unscale pass of dynamic loss scaling, over every gradient of the list
// (one device) in one kernel call: g *= inv_scale, and found_inf (one f32
// element) is set to 1 when any g held inf or NaN; it is never cleared, so
// the caller zeroes it once per step and passes of several lists combine.
void unscale_grads(const std::vector<TensorPtr>& grads, const TensorPtr& found_inf, double inv_scale);

// sum(t^2) as an f32 scalar [], reduced in a fixed order.
TensorPtr sum_of_squares(const TensorPtr& t);
// t *= scale; dst += alpha src; dst = lerp(dst, src, weight) (all in place).
void scale_inplace(const TensorPtr& t, double scale);
void add_inplace(const TensorPtr& dst, const TensorPtr& src, double alpha);
void lerp_inplace(const TensorPtr& dst, const TensorPtr& src, double weight);

}  // namespace ops
}  // namespace vl
