// Classification losses and their gradients.
#include "binding/addon_data.h"
#include "binding/args.h"
#include "binding/module_registry.h"
#include "binding/tensor_handle.h"
#include "ops/loss.h"

namespace vl {
namespace binding {
namespace {

// crossEntropy(logits, labels, labelSmoothing) -> [loss, lse]
Napi::Value cross_entropy(const Napi::CallbackInfo& info) {
  Args a{info, "crossEntropyForward"};
  return TensorHandle::wrap_all(info.Env(), ops::cross_entropy(a.tensor(0), a.tensor(1), a.number(2, "labelSmoothing")));
}

// crossEntropyBackward(dloss, logits, lse, labels, labelSmoothing) -> dlogits
Napi::Value cross_entropy_backward(const Napi::CallbackInfo& info) {
  Args a{info, "crossEntropyBackward"};
  return TensorHandle::wrap(info.Env(), ops::cross_entropy_backward(a.tensor(0), a.tensor(1), a.tensor(2),
                                                                    a.tensor(3), a.number(4, "labelSmoothing")));
}

// softCrossEntropy(logits, targets) -> [loss, lse]
Napi::Value soft_cross_entropy(const Napi::CallbackInfo& info) {
  Args a{info, "softCrossEntropyForward"};
  return TensorHandle::wrap_all(info.Env(), ops::soft_cross_entropy(a.tensor(0), a.tensor(1)));
}

// softCrossEntropyBackward(dloss, logits, lse, targets) -> dlogits
Napi::Value soft_cross_entropy_backward(const Napi::CallbackInfo& info) {
  Args a{info, "softCrossEntropyBackward"};
  return TensorHandle::wrap(info.Env(),
                            ops::soft_cross_entropy_backward(a.tensor(0), a.tensor(1), a.tensor(2), a.tensor(3)));
}

Napi::Value bce_with_logits(const Napi::CallbackInfo& info) {
  Args a{info, "bceWithLogitsForward"};
  return TensorHandle::wrap(info.Env(), ops::bce_with_logits(a.tensor(0), a.tensor(1)));
}

// bceWithLogitsBackward(dloss, logits, targets) -> dlogits
Napi::Value bce_with_logits_backward(const Napi::CallbackInfo& info) {
  Args a{info, "bceWithLogitsBackward"};
  return TensorHandle::wrap(info.Env(), ops::bce_with_logits_backward(a.tensor(0), a.tensor(1), a.tensor(2)));
}

void init_loss(Napi::Object exports) {
  VL_EXPORT(exports, "crossEntropy", cross_entropy);
  VL_EXPORT(exports, "crossEntropyBackward", cross_entropy_backward);
  VL_EXPORT(exports, "softCrossEntropy", soft_cross_entropy);
  VL_EXPORT(exports, "softCrossEntropyBackward", soft_cross_entropy_backward);
  VL_EXPORT(exports, "bceWithLogits", bce_with_logits);
  VL_EXPORT(exports, "bceWithLogitsBackward", bce_with_logits_backward);
}

}  // namespace

VL_BINDING_MODULE(init_loss);

}  // namespace binding
}  // namespace vl
