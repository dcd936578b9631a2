// Module entry: per-environment state, the TensorHandle class, exports.
#include <napi.h>

#include <vector>

#include "binding/addon_data.h"
#include "binding/module_registry.h"
#include "binding/tensor_handle.h"
#include "core/cpu_features.h"
#include "core/thread_pool.h"

namespace vl {
namespace binding {

namespace {

std::vector<ModuleInit>& modules() {
  static auto* m = new std::vector<ModuleInit>();
  return *m;
}

// lib/errors.ts hands over its classes so native errors arrive typed.
Napi::Value set_error_classes(const Napi::CallbackInfo& info) {
  if (!info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "setErrorClasses: expected an object");
  addon_data(info.Env()).error_classes = Napi::Persistent(info[0].As<Napi::Object>());
  return info.Env().Undefined();
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);  // deleted with the environment
  data->completions = CompletionTsfn::New(env, "visionllama.completion", 0, 1);
  data->completions.Unref(env);
  Napi::Function ctor = TensorHandle::define(env);
  data->tensor_constructor = Napi::Persistent(ctor);
  exports.Set("TensorHandle", ctor);
  exports.Set("setErrorClasses", Napi::Function::New(env, set_error_classes, "setErrorClasses"));
  guarded(env, [&] {
    // Settings read from the environment fail the load, with their message, when bad.
    active_isa();
    num_threads();
    return 0;
  });
  init_modules(exports);
  exports.Set("cudaBuilt", Napi::Boolean::New(env,
#ifdef VLLAMA_WITH_CUDA
                                              true
#else
                                              false
#endif
                                              ));
  return exports;
}

}  // namespace

void register_module(ModuleInit init) { modules().push_back(init); }
void init_modules(Napi::Object exports) {
  for (ModuleInit init : modules()) init(exports);
}

}  // namespace binding
}  // namespace vl

static Napi::Object vl_init(Napi::Env env, Napi::Object exports) { return vl::binding::init(env, exports); }
NODE_API_MODULE(visionllama, vl_init)
