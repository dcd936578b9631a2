// In-place optimizer updates and training-loop helpers.
#include "binding/addon_data.h"
#include "binding/args.h"
#include "binding/module_registry.h"
#include "binding/tensor_handle.h"
#include "ops/optim.h"

namespace vl {
namespace binding {
namespace {

// Arguments 4..9 of adamwUpdate and lambUpdate.
ops::AdamHyper adam_hyper(const Args& a) {
  return ops::AdamHyper{a.number(4, "lr"),   a.number(5, "beta1"),       a.number(6, "beta2"),
                        a.number(7, "eps"),  a.number(8, "weightDecay"), a.integer(9, "step")};
}

// adamwUpdate(param, grad, expAvg, expAvgSq, lr, beta1, beta2, eps, weightDecay, step)
Napi::Value adamw_update(const Napi::CallbackInfo& info) {
  Args a{info, "adamwUpdate"};
  ops::adamw_update(a.tensor(0), a.tensor(1), a.tensor(2), a.tensor(3), adam_hyper(a));
  return info.Env().Undefined();
}

// sgdUpdate(param, grad, momentumBuffer|null, lr, momentum, dampening, weightDecay, nesterov, firstStep)
Napi::Value sgd_update(const Napi::CallbackInfo& info) {
  Args a{info, "sgdUpdate"};
  const ops::SgdHyper h{a.number(3, "lr"),          a.number(4, "momentum"),  a.number(5, "dampening"),
                        a.number(6, "weightDecay"), a.boolean(7, "nesterov"), a.boolean(8, "firstStep")};
  ops::sgd_update(a.tensor(0), a.tensor(1), a.optional_tensor(2), h);
  return info.Env().Undefined();
}

// lambUpdate(param, grad, expAvg, expAvgSq, lr, beta1, beta2, eps, weightDecay, step)
Napi::Value lamb_update(const Napi::CallbackInfo& info) {
  Args a{info, "lambUpdate"};
  ops::lamb_update(a.tensor(0), a.tensor(1), a.tensor(2), a.tensor(3), adam_hyper(a));
  return info.Env().Undefined();
}

// Arguments 4..9 of adamwUpdateMulti and lambUpdateMulti.
ops::AdamMultiHyper adam_multi_hyper(const Args& a) {
  return ops::AdamMultiHyper{a.number(4, "lr"), a.number(5, "beta1"), a.number(6, "beta2"), a.number(7, "eps"),
                             a.numbers(8, "weightDecays"), a.ints(9, "steps")};
}

// adamwUpdateMulti(params, grads, expAvgs, expAvgSqs, lr, beta1, beta2, eps, weightDecays, steps, foundInf?)
Napi::Value adamw_update_multi(const Napi::CallbackInfo& info) {
  Args a{info, "adamwUpdateMulti"};
  ops::adamw_update_multi(a.tensors(0, "params"), a.tensors(1, "grads"), a.tensors(2, "expAvgs"),
                          a.tensors(3, "expAvgSqs"), adam_multi_hyper(a), a.optional_tensor(10));
  return info.Env().Undefined();
}

// lambUpdateMulti(params, grads, expAvgs, expAvgSqs, lr, beta1, beta2, eps, weightDecays, steps, foundInf?)
Napi::Value lamb_update_multi(const Napi::CallbackInfo& info) {
  Args a{info, "lambUpdateMulti"};
  ops::lamb_update_multi(a.tensors(0, "params"), a.tensors(1, "grads"), a.tensors(2, "expAvgs"),
                         a.tensors(3, "expAvgSqs"), adam_multi_hyper(a), a.optional_tensor(10));
  return info.Env().Undefined();
}

// sgdUpdateMulti(params, grads, momentumBuffers, lr, momentum, dampening, nesterov, weightDecays, firstSteps, foundInf?)
Napi::Value sgd_update_multi(const Napi::CallbackInfo& info) {
  Args a{info, "sgdUpdateMulti"};
  const ops::SgdMultiHyper h{a.number(3, "lr"),       a.number(4, "momentum"),        a.number(5, "dampening"),
                             a.boolean(6, "nesterov"), a.numbers(7, "weightDecays"), a.booleans(8, "firstSteps")};
  ops::sgd_update_multi(a.tensors(0, "params"), a.tensors(1, "grads"), a.tensors(2, "momentumBuffers"), h,
                        a.optional_tensor(9));
  return info.Env().Undefined();
}

// unscaleGrads(grads, foundInf, invScale)
Napi::Value unscale_grads(const Napi::CallbackInfo& info) {
  Args a{info, "unscaleGrads"};
  ops::unscale_grads(a.tensors(0, "grads"), a.tensor(1), a.number(2, "invScale"));
  return info.Env().Undefined();
}

Napi::Value sum_of_squares(const Napi::CallbackInfo& info) {
  Args a{info, "sumOfSquares"};
  return TensorHandle::wrap(info.Env(), ops::sum_of_squares(a.tensor(0)));
}

Napi::Value scale_inplace(const Napi::CallbackInfo& info) {
  Args a{info, "scaleInPlace"};
  ops::scale_inplace(a.tensor(0), a.number(1, "scale"));
  return info.Env().Undefined();
}

Napi::Value add_inplace(const Napi::CallbackInfo& info) {
  Args a{info, "addInPlace"};
  ops::add_inplace(a.tensor(0), a.tensor(1), a.number(2, "alpha"));
  return info.Env().Undefined();
}

Napi::Value lerp_inplace(const Napi::CallbackInfo& info) {
  Args a{info, "lerpInPlace"};
  ops::lerp_inplace(a.tensor(0), a.tensor(1), a.number(2, "weight"));
  return info.Env().Undefined();
}

void init_optim(Napi::Object exports) {
  VL_EXPORT(exports, "adamwUpdate", adamw_update);
  VL_EXPORT(exports, "sgdUpdate", sgd_update);
  VL_EXPORT(exports, "lambUpdate", lamb_update);
  VL_EXPORT(exports, "adamwUpdateMulti", adamw_update_multi);
  VL_EXPORT(exports, "sgdUpdateMulti", sgd_update_multi);
  VL_EXPORT(exports, "lambUpdateMulti", lamb_update_multi);
  VL_EXPORT(exports, "unscaleGrads", unscale_grads);
  VL_EXPORT(exports, "sumOfSquares", sum_of_squares);
  VL_EXPORT(exports, "scaleInPlace", scale_inplace);
  VL_EXPORT(exports, "addInPlace", add_inplace);
  VL_EXPORT(exports, "lerpInPlace", lerp_inplace);
}

}  // namespace

VL_BINDING_MODULE(init_optim);

}  // namespace binding
}  // namespace vl
