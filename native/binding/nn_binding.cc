// Normalization, softmax, activations and window layout ops.
#include "binding/addon_data.h"
#include "binding/args.h"
#include "binding/module_registry.h"
#include "binding/tensor_handle.h"
#include "ops/nn.h"

namespace vl {
namespace binding {
namespace {

// layerNorm(x, weight|null, bias|null, eps, stats) -> [y, mean?, rstd?]
Napi::Value layer_norm(const Napi::CallbackInfo& info) {
  Args a{info, "layerNorm"};
  return TensorHandle::wrap_all(info.Env(), ops::layer_norm(a.tensor(0), a.optional_tensor(1), a.optional_tensor(2),
                                              a.number(3, "eps"), a.boolean(4, "stats")));
}

// addLayerNorm(x, residual, weight|null, bias|null, eps, stats) -> [sum, y, mean?, rstd?]
Napi::Value add_layer_norm(const Napi::CallbackInfo& info) {
  Args a{info, "addLayerNorm"};
  return TensorHandle::wrap_all(info.Env(), ops::add_layer_norm(a.tensor(0), a.tensor(1), a.optional_tensor(2),
                                                  a.optional_tensor(3), a.number(4, "eps"), a.boolean(5, "stats")));
}

Napi::Value softmax(const Napi::CallbackInfo& info) {
  Args a{info, "softmax"};
  return TensorHandle::wrap_all(info.Env(), ops::softmax(a.tensor(0), a.boolean(1, "lse")));
}

Napi::Value activation(const Napi::CallbackInfo& info) {
  Args a{info, "activation"};
  return TensorHandle::wrap(info.Env(), ops::activation(a.string(0, "kind"), a.tensor(1)));
}

// layerNormBackward(dy, x, mean, rstd, weight|null) -> [dx, dweight?, dbias?]
Napi::Value layer_norm_backward(const Napi::CallbackInfo& info) {
  Args a{info, "layerNormBackward"};
  return TensorHandle::wrap_all(info.Env(), ops::layer_norm_backward(a.tensor(0), a.tensor(1), a.tensor(2), a.tensor(3),
                                                       a.optional_tensor(4)));
}

// activationBackward(kind, dy, x) -> dx
Napi::Value activation_backward(const Napi::CallbackInfo& info) {
  Args a{info, "activationBackward"};
  return TensorHandle::wrap(info.Env(), ops::activation_backward(a.string(0, "kind"), a.tensor(1), a.tensor(2)));
}

Napi::Value swiglu_gate(const Napi::CallbackInfo& info) {
  Args a{info, "swigluGate"};
  return TensorHandle::wrap(info.Env(), ops::swiglu_gate(a.tensor(0)));
}

Napi::Value swiglu_gate_backward(const Napi::CallbackInfo& info) {
  Args a{info, "swigluGateBackward"};
  return TensorHandle::wrap(info.Env(), ops::swiglu_gate_backward(a.tensor(0), a.tensor(1)));
}

Napi::Value window_partition(const Napi::CallbackInfo& info) {
  Args a{info, "windowPartition"};
  return TensorHandle::wrap(info.Env(), ops::window_partition(a.tensor(0), a.integer(1, "height"),
                                                              a.integer(2, "width"), a.integer(3, "window")));
}

Napi::Value window_merge(const Napi::CallbackInfo& info) {
  Args a{info, "windowMerge"};
  return TensorHandle::wrap(info.Env(), ops::window_merge(a.tensor(0), a.integer(1, "batch"), a.integer(2, "height"),
                                                          a.integer(3, "width"), a.integer(4, "window")));
}

void init_nn(Napi::Object exports) {
  VL_EXPORT(exports, "layerNorm", layer_norm);
  VL_EXPORT(exports, "addLayerNorm", add_layer_norm);
  VL_EXPORT(exports, "softmax", softmax);
  VL_EXPORT(exports, "activation", activation);
  VL_EXPORT(exports, "layerNormBackward", layer_norm_backward);
  VL_EXPORT(exports, "activationBackward", activation_backward);
  VL_EXPORT(exports, "swigluGate", swiglu_gate);
  VL_EXPORT(exports, "swigluGateBackward", swiglu_gate_backward);
  VL_EXPORT(exports, "windowPartition", window_partition);
  VL_EXPORT(exports, "windowMerge", window_merge);
}

}  // namespace

VL_BINDING_MODULE(init_nn);

}  // namespace binding
}  // namespace vl
