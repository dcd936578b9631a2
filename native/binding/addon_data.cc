#include "binding/addon_data.h"

namespace vl {
namespace binding {

AddonData& addon_data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

Napi::Error make_error(Napi::Env env, ErrorCode code, const std::string& message) {
  const char* name = error_code_name(code);
  AddonData& data = addon_data(env);
  if (!data.error_classes.IsEmpty()) {
    Napi::Value ctor = data.error_classes.Value().Get(name);
    if (ctor.IsFunction()) {
      Napi::Object err = ctor.As<Napi::Function>().New({Napi::String::New(env, message)});
      return Napi::Error(env, err);
    }
  }
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, name));
  return err;
}

void deliver_completion(Napi::Env env, Napi::Function, void*, Completion* c) {
  if (env != nullptr) {
    AddonData& data = addon_data(env);
    if (--data.pending == 0) data.completions.Unref(env);
    Napi::HandleScope scope(env);
    c->deliver(env, c->error);
  }
  delete c;
}

CompletionTsfn begin_completion(Napi::Env env) {
  AddonData& data = addon_data(env);
  if (data.pending++ == 0) data.completions.Ref(env);
  return data.completions;
}

void post_completion(CompletionTsfn tsfn, Completion* c) {
  if (tsfn.NonBlockingCall(c) != napi_ok) delete c;  // the environment is shutting down
}

}  // namespace binding
}  // namespace vl
