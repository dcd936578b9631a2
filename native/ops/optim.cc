#include "ops/optim.h"

#include <cmath>
#include <utility>
#include <vector>

#include "core/dispatch.h"
#include "core/error.h"
#include "ops/ops.h"

namespace vl {
namespace ops {
namespace {

using Named = std::pair<const char*, TensorPtr>;

bool overlap(const TensorPtr& a, const TensorPtr& b) {
  if (a->storage() != b->storage() || a->numel() == 0 || b->numel() == 0) return false;
  return a->offset() < b->offset() + b->numel() && b->offset() < a->offset() + a->numel();
}

// The operands of an in-place update: f32, contiguous, the shape and device
// of the first. Tensors that share memory would race (or update each other)
// unless `same_view_ok` and they are the same elements.
void check_inplace(const char* op, const std::vector<Named>& ts, bool same_view_ok = false) {
  const Named& first = ts[0];
  for (size_t i = 0; i < ts.size(); ++i) {
    const char* name = ts[i].first;
    const TensorPtr& t = ts[i].second;
    VL_CHECK(t->dtype() == DType::F32, ErrorCode::DType, op, ": ", name, " must be f32, got ", t->describe());
    VL_CHECK(t->is_contiguous(), ErrorCode::Argument, op, ": ", name,
             " must be contiguous (it is used in place and is never copied), got a strided view ", t->describe());
    if (i == 0) continue;
    VL_CHECK(t->shape() == first.second->shape(), ErrorCode::Shape, op, ": ", name, " ", t->describe(),
             " must have the shape of ", first.first, " ", first.second->describe());
    VL_CHECK(t->device() == first.second->device(), ErrorCode::Device, op, ": ", name, " is on ", t->device().str(),
             " but ", first.first, " is on ", first.second->device().str());
  }
  for (size_t i = 0; i < ts.size(); ++i)
    for (size_t j = i + 1; j < ts.size(); ++j) {
      const TensorPtr &a = ts[i].second, &b = ts[j].second;
      if (same_view_ok && a->storage() == b->storage() && a->offset() == b->offset()) continue;
      VL_CHECK(!overlap(a, b), ErrorCode::Argument, op, ": ", ts[i].first, " and ", ts[j].first,
               " share memory; expected separate tensors");
    }
}

void check_finite(const char* op, const char* name, double v) {
  VL_CHECK(std::isfinite(v), ErrorCode::Argument, op, ": ", name, " must be a finite number, got ", v);
}

void check_adam(const char* op, const AdamHyper& h) {
  check_finite(op, "lr", h.lr);
  VL_CHECK(h.lr >= 0, ErrorCode::Argument, op, ": lr must be >= 0, got ", h.lr);
  VL_CHECK(h.beta1 >= 0 && h.beta1 < 1, ErrorCode::Argument, op, ": beta1 must be in [0, 1), got ", h.beta1);
  VL_CHECK(h.beta2 >= 0 && h.beta2 < 1, ErrorCode::Argument, op, ": beta2 must be in [0, 1), got ", h.beta2);
  check_finite(op, "eps", h.eps);
  VL_CHECK(h.eps >= 0, ErrorCode::Argument, op, ": eps must be >= 0, got ", h.eps);
  check_finite(op, "weightDecay", h.weight_decay);
  VL_CHECK(h.weight_decay >= 0, ErrorCode::Argument, op, ": weightDecay must be >= 0, got ", h.weight_decay);
  VL_CHECK(h.step >= 1, ErrorCode::Argument, op, ": step must be >= 1 (the count of updates including this one), got ",
           h.step);
}

}  // namespace

void adamw_update(const TensorPtr& param, const TensorPtr& grad, const TensorPtr& exp_avg,
                  const TensorPtr& exp_avg_sq, const AdamHyper& h) {
  const char* op = "adamwUpdate";
  check_inplace(op, {{"param", param}, {"grad", grad}, {"expAvg", exp_avg}, {"expAvgSq", exp_avg_sq}});
  check_adam(op, h);
  if (param->numel() == 0) return;
  // The scalar factors as torch.optim.AdamW computes them (in double).
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(h.step));
  launch("adamw_update", {param, grad, exp_avg, exp_avg_sq}, {param, exp_avg, exp_avg_sq},
         Attrs()
             .set("decay", 1.0 - h.lr * h.weight_decay)
             .set("lerp_weight", 1.0 - h.beta1)
             .set("beta2", h.beta2)
             .set("one_minus_beta2", 1.0 - h.beta2)
             .set("neg_step_size", -(h.lr / bc1))
             .set("bc2_sqrt", std::sqrt(bc2))
             .set("eps", h.eps));
}

void sgd_update(const TensorPtr& param, const TensorPtr& grad, const TensorPtr& buffer, const SgdHyper& h) {
  const char* op = "sgdUpdate";
  check_finite(op, "lr", h.lr);
  VL_CHECK(h.lr >= 0, ErrorCode::Argument, op, ": lr must be >= 0, got ", h.lr);
  check_finite(op, "momentum", h.momentum);
  VL_CHECK(h.momentum >= 0, ErrorCode::Argument, op, ": momentum must be >= 0, got ", h.momentum);
  check_finite(op, "dampening", h.dampening);
  check_finite(op, "weightDecay", h.weight_decay);
  VL_CHECK(h.weight_decay >= 0, ErrorCode::Argument, op, ": weightDecay must be >= 0, got ", h.weight_decay);
  VL_CHECK(!h.nesterov || (h.momentum > 0 && h.dampening == 0), ErrorCode::Argument, op,
           ": nesterov needs momentum > 0 and dampening 0, got momentum ", h.momentum, " and dampening ",
           h.dampening);
  const bool use_buffer = h.momentum != 0;  // as in PyTorch, momentum 0 keeps no buffer
  VL_CHECK(!use_buffer || buffer, ErrorCode::Argument, op, ": momentum ", h.momentum,
           " needs a momentumBuffer tensor (the shape of param), got null");
  std::vector<Named> ts{{"param", param}, {"grad", grad}};
  if (buffer) ts.emplace_back("momentumBuffer", buffer);
  check_inplace(op, ts);
  if (param->numel() == 0) return;
  std::vector<TensorPtr> in{param, grad}, out{param};
  if (use_buffer) {
    in.push_back(buffer);
    out.push_back(buffer);
  }
  launch("sgd_update", in, out,
         Attrs()
             .set("lr", h.lr)
             .set("momentum", h.momentum)
             .set("one_minus_dampening", 1.0 - h.dampening)
             .set("weight_decay", h.weight_decay)
             .set("nesterov", h.nesterov ? 1.0 : 0.0)
             .set("first_step", h.first_step ? 1.0 : 0.0));
}

void lamb_update(const TensorPtr& param, const TensorPtr& grad, const TensorPtr& exp_avg,
                 const TensorPtr& exp_avg_sq, const AdamHyper& h) {
  const char* op = "lambUpdate";
  check_inplace(op, {{"param", param}, {"grad", grad}, {"expAvg", exp_avg}, {"expAvgSq", exp_avg_sq}});
  check_adam(op, h);
  if (param->numel() == 0) return;
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(h.step));
  launch("lamb_update", {param, grad, exp_avg, exp_avg_sq}, {param, exp_avg, exp_avg_sq},
         Attrs()
             .set("beta1", h.beta1)
             .set("one_minus_beta1", 1.0 - h.beta1)
             .set("beta2", h.beta2)
             .set("one_minus_beta2", 1.0 - h.beta2)
             .set("inv_bc1", 1.0 / bc1)
             .set("inv_bc2", 1.0 / bc2)
             .set("eps", h.eps)
             .set("weight_decay", h.weight_decay)
             .set("lr", h.lr));
}

TensorPtr sum_of_squares(const TensorPtr& t_in) {
  VL_CHECK(t_in->dtype() == DType::F32, ErrorCode::DType, "sumOfSquares: expected an f32 tensor, got ",
           t_in->describe());
  if (t_in->numel() == 0) return full({}, DType::F32, t_in->device(), 0.0);
  const TensorPtr t = contiguous(t_in);  // read only: a copy of a strided view is fine
  TensorPtr out = empty_tensor({}, DType::F32, t->device());
  launch("sum_of_squares", {t}, {out});
  return out;
}

void scale_inplace(const TensorPtr& t, double scale) {
  check_inplace("scaleInPlace", {{"t", t}});
  check_finite("scaleInPlace", "scale", scale);
  if (t->numel() > 0) launch("scale_inplace", {t}, {t}, Attrs().set("scale", scale));
}

void add_inplace(const TensorPtr& dst, const TensorPtr& src, double alpha) {
  check_inplace("addInPlace", {{"dst", dst}, {"src", src}}, true);
  check_finite("addInPlace", "alpha", alpha);
  if (dst->numel() > 0) launch("add_inplace", {dst, src}, {dst}, Attrs().set("alpha", alpha));
}

void lerp_inplace(const TensorPtr& dst, const TensorPtr& src, double weight) {
  check_inplace("lerpInPlace", {{"dst", dst}, {"src", src}}, true);
  check_finite("lerpInPlace", "weight", weight);
  if (dst->numel() > 0) launch("lerp_inplace", {dst, src}, {dst}, Attrs().set("weight", weight));
}

}  // namespace ops
}  // namespace vl
