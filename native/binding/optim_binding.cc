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
  VL_EXPORT(exports, "sumOfSquares", sum_of_squares);
  VL_EXPORT(exports, "scaleInPlace", scale_inplace);
  VL_EXPORT(exports, "addInPlace", add_inplace);
  VL_EXPORT(exports, "lerpInPlace", lerp_inplace);
}

}  // namespace

VL_BINDING_MODULE(init_optim);

}  // namespace binding
}  // namespace vl
