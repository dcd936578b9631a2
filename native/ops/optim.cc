#include "ops/optim.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/dispatch.h"
#include "core/error.h"
#include "ops/ops.h"

namespace vl {
namespace ops {
namespace {

using Named = std::pair<std::string, TensorPtr>;

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
    const std::string& name = ts[i].first;
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

void check_weight_decay(const char* op, const std::string& name, double wd) {
  check_finite(op, name.c_str(), wd);
  VL_CHECK(wd >= 0, ErrorCode::Argument, op, ": ", name, " must be >= 0, got ", wd);
}

// The hyper-parameters every tensor of an Adam-family step shares.
void check_adam_common(const char* op, double lr, double beta1, double beta2, double eps) {
  check_finite(op, "lr", lr);
  VL_CHECK(lr >= 0, ErrorCode::Argument, op, ": lr must be >= 0, got ", lr);
  VL_CHECK(beta1 >= 0 && beta1 < 1, ErrorCode::Argument, op, ": beta1 must be in [0, 1), got ", beta1);
  VL_CHECK(beta2 >= 0 && beta2 < 1, ErrorCode::Argument, op, ": beta2 must be in [0, 1), got ", beta2);
  check_finite(op, "eps", eps);
  VL_CHECK(eps >= 0, ErrorCode::Argument, op, ": eps must be >= 0, got ", eps);
}

void check_step(const char* op, const std::string& name, int64_t step) {
  VL_CHECK(step >= 1, ErrorCode::Argument, op, ": ", name,
           " must be >= 1 (the count of updates including this one), got ", step);
}

void check_adam(const char* op, const AdamHyper& h) {
  check_adam_common(op, h.lr, h.beta1, h.beta2, h.eps);
  check_weight_decay(op, "weightDecay", h.weight_decay);
  check_step(op, "step", h.step);
}

void check_sgd_common(const char* op, double lr, double momentum, double dampening, bool nesterov) {
  check_finite(op, "lr", lr);
  VL_CHECK(lr >= 0, ErrorCode::Argument, op, ": lr must be >= 0, got ", lr);
  check_finite(op, "momentum", momentum);
  VL_CHECK(momentum >= 0, ErrorCode::Argument, op, ": momentum must be >= 0, got ", momentum);
  check_finite(op, "dampening", dampening);
  VL_CHECK(!nesterov || (momentum > 0 && dampening == 0), ErrorCode::Argument, op,
           ": nesterov needs momentum > 0 and dampening 0, got momentum ", momentum, " and dampening ", dampening);
}

std::string indexed(const char* list, size_t i) { return std::string(list) + "[" + std::to_string(i) + "]"; }

// A list of a multi-tensor call; `written` lists are updated in place.
struct NamedList {
  const char* name;
  const std::vector<TensorPtr>* ts;
  bool written;
};

// The lists of a multi-tensor update: one length, tensor i of each list
// checked as the per-tensor update checks its operands, every tensor on the
// device of the first list's tensor 0 (nothing is copied), and no written
// tensor sharing memory with any other tensor of the call.
void check_multi(const char* op, const std::vector<NamedList>& lists) {
  const NamedList& first = lists[0];
  const size_t n = first.ts->size();
  for (const NamedList& l : lists)
    VL_CHECK(l.ts->size() == n, ErrorCode::Argument, op, ": ", l.name, " has ", l.ts->size(), " tensors but ",
             first.name, " has ", n, "; expected one per parameter");
  struct Span {
    const void* storage;
    int64_t begin, end;
    std::string name;
    bool written;
  };
  std::vector<Span> spans;
  for (size_t i = 0; i < n; ++i) {
    std::vector<Named> ts;
    for (const NamedList& l : lists) {
      const TensorPtr& t = (*l.ts)[i];
      VL_CHECK(t != nullptr, ErrorCode::Argument, op, ": ", indexed(l.name, i), " is missing");
      ts.emplace_back(indexed(l.name, i), t);
    }
    check_inplace(op, ts);  // within index i: dtype, layout, shape and device of first.name[i]
    const TensorPtr& t0 = (*first.ts)[0];
    VL_CHECK(ts[0].second->device() == t0->device(), ErrorCode::Device, op, ": ", ts[0].first, " is on ",
             ts[0].second->device().str(), " but ", first.name, "[0] is on ", t0->device().str(),
             "; a multi-tensor update runs on one device and copies nothing (group the tensors by device)");
    for (size_t l = 0; l < lists.size(); ++l) {
      const TensorPtr& t = ts[l].second;
      if (t->numel() > 0)
        spans.push_back({t->storage().get(), t->offset(), t->offset() + t->numel(), ts[l].first, lists[l].written});
    }
  }
  // Sorted by storage and start, a span overlaps an earlier one iff it starts
  // before the furthest end so far; tracking the furthest written span too
  // finds every overlap that involves a written tensor.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.storage != b.storage ? std::less<const void*>()(a.storage, b.storage) : a.begin < b.begin;
  });
  const Span* furthest = nullptr;
  const Span* furthest_written = nullptr;
  for (size_t j = 0; j < spans.size(); ++j) {
    const Span& s = spans[j];
    if (j > 0 && spans[j - 1].storage != s.storage) furthest = furthest_written = nullptr;
    const Span* hit = furthest_written && furthest_written->end > s.begin ? furthest_written
                      : s.written && furthest && furthest->end > s.begin ? furthest
                                                                          : nullptr;
    VL_CHECK(hit == nullptr, ErrorCode::Argument, op, ": ", hit->name, " and ", s.name,
             " share memory; expected separate tensors");
    if (!furthest || s.end > furthest->end) furthest = &s;
    if (s.written && (!furthest_written || s.end > furthest_written->end)) furthest_written = &s;
  }
}

// One tensor's step factors (computed in double on the host), by the names
// the kernels read: a number each for a per-tensor launch, a list of one per
// tensor for a multi-tensor launch.
using Factors = std::vector<std::pair<const char*, double>>;

Attrs with_factors(Attrs a, const Factors& f) {
  for (const auto& kv : f) a.set(kv.first, kv.second);
  return a;
}

// The found-inf flag of a loss-scaled step (null: none): one f32 element on
// the device of the lists, sharing memory with none of their tensors.
void check_found_inf(const char* op, const TensorPtr& found_inf, const std::vector<NamedList>& lists) {
  if (!found_inf) return;
  VL_CHECK(found_inf->dtype() == DType::F32 && found_inf->numel() == 1, ErrorCode::Argument, op,
           ": foundInf must be one f32 element (the flag of GradScaler), got ", found_inf->describe());
  if (lists[0].ts->empty()) return;
  const TensorPtr& t0 = (*lists[0].ts)[0];
  VL_CHECK(found_inf->device() == t0->device(), ErrorCode::Device, op, ": foundInf is on ", found_inf->device().str(),
           " but ", lists[0].name, "[0] is on ", t0->device().str());
  for (const NamedList& l : lists)
    for (size_t i = 0; i < l.ts->size(); ++i)
      VL_CHECK(!overlap(found_inf, (*l.ts)[i]), ErrorCode::Argument, op, ": foundInf and ", indexed(l.name, i),
               " share memory; expected separate tensors");
}

// Launches `op` over the tensors of `lists` that have elements: inputs are
// every list's tensor i, outputs the written lists' tensor i, in list order
// (so the kernel finds tensor t's operands at in[t * lists + l]), then the
// found-inf flag when there is one (attr found_inf says which).
void launch_multi(const char* op, const std::vector<NamedList>& lists, Attrs common,
                  const std::function<Factors(size_t)>& factors_of, const TensorPtr& found_inf) {
  std::vector<TensorPtr> in, out;
  std::vector<Factors> factors;
  for (size_t i = 0; i < lists[0].ts->size(); ++i) {
    if ((*lists[0].ts)[i]->numel() == 0) continue;
    for (const NamedList& l : lists) {
      in.push_back((*l.ts)[i]);
      if (l.written) out.push_back((*l.ts)[i]);
    }
    factors.push_back(factors_of(i));
  }
  if (factors.empty()) return;
  for (size_t f = 0; f < factors[0].size(); ++f) {
    std::vector<double> list(factors.size());
    for (size_t t = 0; t < factors.size(); ++t) list[t] = factors[t][f].second;
    common.set_nums(factors[0][f].first, std::move(list));
  }
  if (found_inf) in.push_back(found_inf);
  common.set("found_inf", found_inf ? 1.0 : 0.0);
  launch(op, in, out, std::move(common));
}

void check_adam_multi(const char* op, size_t n, const AdamMultiHyper& h) {
  check_adam_common(op, h.lr, h.beta1, h.beta2, h.eps);
  VL_CHECK(h.weight_decay.size() == n && h.step.size() == n, ErrorCode::Argument, op, ": expected ", n,
           " weight decays and steps (one per parameter), got ", h.weight_decay.size(), " and ", h.step.size());
  for (size_t i = 0; i < n; ++i) {
    check_weight_decay(op, indexed("weightDecays", i), h.weight_decay[i]);
    check_step(op, indexed("steps", i), h.step[i]);
  }
}

AdamHyper adam_at(const AdamMultiHyper& h, size_t i) {
  return AdamHyper{h.lr, h.beta1, h.beta2, h.eps, h.weight_decay[i], h.step[i]};
}

// AdamW's factors as torch.optim.AdamW computes them (in double): those
// every tensor shares, and those of one tensor (decay, bias corrections).
Attrs adamw_common(const AdamHyper& h) {
  return Attrs()
      .set("lerp_weight", 1.0 - h.beta1)
      .set("beta2", h.beta2)
      .set("one_minus_beta2", 1.0 - h.beta2)
      .set("eps", h.eps);
}
Factors adamw_factors(const AdamHyper& h) {
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(h.step));
  return {{"decay", 1.0 - h.lr * h.weight_decay}, {"neg_step_size", -(h.lr / bc1)}, {"bc2_sqrt", std::sqrt(bc2)}};
}

Attrs lamb_common(const AdamHyper& h) {
  return Attrs()
      .set("beta1", h.beta1)
      .set("one_minus_beta1", 1.0 - h.beta1)
      .set("beta2", h.beta2)
      .set("one_minus_beta2", 1.0 - h.beta2)
      .set("eps", h.eps)
      .set("lr", h.lr);
}
Factors lamb_factors(const AdamHyper& h) {
  const double bc1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, static_cast<double>(h.step));
  return {{"inv_bc1", 1.0 / bc1}, {"inv_bc2", 1.0 / bc2}, {"weight_decay", h.weight_decay}};
}

Attrs sgd_common(double lr, double momentum, double dampening, bool nesterov) {
  return Attrs()
      .set("lr", lr)
      .set("momentum", momentum)
      .set("one_minus_dampening", 1.0 - dampening)
      .set("nesterov", nesterov ? 1.0 : 0.0);
}
Factors sgd_factors(double weight_decay, bool first_step) {
  return {{"weight_decay", weight_decay}, {"first_step", first_step ? 1.0 : 0.0}};
}

std::vector<NamedList> adam_lists(const std::vector<TensorPtr>& params, const std::vector<TensorPtr>& grads,
                                  const std::vector<TensorPtr>& exp_avgs, const std::vector<TensorPtr>& exp_avg_sqs) {
  return {{"params", &params, true}, {"grads", &grads, false}, {"expAvgs", &exp_avgs, true},
          {"expAvgSqs", &exp_avg_sqs, true}};
}

// An Adam-family multi-tensor update: the checks, then one launch of `kernel`
// with the factors every tensor shares and each tensor's own.
void adam_family_multi(const char* op, const char* kernel, const std::vector<NamedList>& lists,
                       const AdamMultiHyper& h, Attrs (*common)(const AdamHyper&), Factors (*factors)(const AdamHyper&),
                       const TensorPtr& found_inf) {
  check_multi(op, lists);
  check_found_inf(op, found_inf, lists);
  const size_t n = lists[0].ts->size();
  check_adam_multi(op, n, h);
  if (n == 0) return;
  launch_multi(kernel, lists, common(adam_at(h, 0)), [&](size_t i) { return factors(adam_at(h, i)); }, found_inf);
}

}  // namespace

void adamw_update(const TensorPtr& param, const TensorPtr& grad, const TensorPtr& exp_avg,
                  const TensorPtr& exp_avg_sq, const AdamHyper& h) {
  const char* op = "adamwUpdate";
  check_inplace(op, {{"param", param}, {"grad", grad}, {"expAvg", exp_avg}, {"expAvgSq", exp_avg_sq}});
  check_adam(op, h);
  if (param->numel() == 0) return;
  launch("adamw_update", {param, grad, exp_avg, exp_avg_sq}, {param, exp_avg, exp_avg_sq},
         with_factors(adamw_common(h), adamw_factors(h)));
}

void adamw_update_multi(const std::vector<TensorPtr>& params, const std::vector<TensorPtr>& grads,
                        const std::vector<TensorPtr>& exp_avgs, const std::vector<TensorPtr>& exp_avg_sqs,
                        const AdamMultiHyper& h, const TensorPtr& found_inf) {
  adam_family_multi("adamwUpdateMulti", "adamw_update_multi", adam_lists(params, grads, exp_avgs, exp_avg_sqs), h,
                    adamw_common, adamw_factors, found_inf);
}

void sgd_update(const TensorPtr& param, const TensorPtr& grad, const TensorPtr& buffer, const SgdHyper& h) {
  const char* op = "sgdUpdate";
  check_sgd_common(op, h.lr, h.momentum, h.dampening, h.nesterov);
  check_weight_decay(op, "weightDecay", h.weight_decay);
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
         with_factors(sgd_common(h.lr, h.momentum, h.dampening, h.nesterov), sgd_factors(h.weight_decay, h.first_step)));
}

void sgd_update_multi(const std::vector<TensorPtr>& params, const std::vector<TensorPtr>& grads,
                      const std::vector<TensorPtr>& buffers, const SgdMultiHyper& h, const TensorPtr& found_inf) {
  const char* op = "sgdUpdateMulti";
  check_sgd_common(op, h.lr, h.momentum, h.dampening, h.nesterov);
  const size_t n = params.size();
  VL_CHECK(h.weight_decay.size() == n && h.first_step.size() == n, ErrorCode::Argument, op, ": expected ", n,
           " weight decays and first-step flags (one per parameter), got ", h.weight_decay.size(), " and ",
           h.first_step.size());
  for (size_t i = 0; i < n; ++i) check_weight_decay(op, indexed("weightDecays", i), h.weight_decay[i]);
  const bool use_buffer = h.momentum != 0;
  VL_CHECK(!use_buffer || !buffers.empty() || n == 0, ErrorCode::Argument, op, ": momentum ", h.momentum,
           " needs momentumBuffers (one per parameter, shaped like it), got an empty list");
  std::vector<NamedList> lists{{"params", &params, true}, {"grads", &grads, false}};
  if (!buffers.empty()) lists.push_back({"momentumBuffers", &buffers, use_buffer});
  check_multi(op, lists);
  check_found_inf(op, found_inf, lists);
  if (!use_buffer && lists.size() > 2) lists.pop_back();  // checked, but momentum 0 keeps no buffer
  if (n == 0) return;
  launch_multi("sgd_update_multi", lists, sgd_common(h.lr, h.momentum, h.dampening, h.nesterov),
               [&](size_t i) { return sgd_factors(h.weight_decay[i], h.first_step[i]); }, found_inf);
}

void lamb_update(const TensorPtr& param, const TensorPtr& grad, const TensorPtr& exp_avg,
                 const TensorPtr& exp_avg_sq, const AdamHyper& h) {
  const char* op = "lambUpdate";
  check_inplace(op, {{"param", param}, {"grad", grad}, {"expAvg", exp_avg}, {"expAvgSq", exp_avg_sq}});
  check_adam(op, h);
  if (param->numel() == 0) return;
  launch("lamb_update", {param, grad, exp_avg, exp_avg_sq}, {param, exp_avg, exp_avg_sq},
         with_factors(lamb_common(h), lamb_factors(h)));
}

void lamb_update_multi(const std::vector<TensorPtr>& params, const std::vector<TensorPtr>& grads,
                       const std::vector<TensorPtr>& exp_avgs, const std::vector<TensorPtr>& exp_avg_sqs,
                       const AdamMultiHyper& h, const TensorPtr& found_inf) {
  adam_family_multi("lambUpdateMulti", "lamb_update_multi", adam_lists(params, grads, exp_avgs, exp_avg_sqs), h,
                    lamb_common, lamb_factors, found_inf);
}

void unscale_grads(const std::vector<TensorPtr>& grads, const TensorPtr& found_inf, double inv_scale) {
  const char* op = "unscaleGrads";
  const std::vector<NamedList> lists{{"grads", &grads, true}};
  check_multi(op, lists);
  VL_CHECK(found_inf != nullptr, ErrorCode::Argument, op, ": foundInf is missing");
  check_found_inf(op, found_inf, lists);
  check_finite(op, "invScale", inv_scale);
  VL_CHECK(inv_scale > 0, ErrorCode::Argument, op, ": invScale must be > 0, got ", inv_scale);
  std::vector<TensorPtr> ts;
  for (const TensorPtr& g : grads)
    if (g->numel() > 0) ts.push_back(g);
  if (ts.empty()) return;
  ts.push_back(found_inf);
  launch("unscale_grads", ts, ts, Attrs().set("inv_scale", inv_scale));
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
