// Per-environment state of the addon (one per Node.js realm / worker thread).
#pragma once
#include <napi.h>

#include <functional>
#include <string>

#include "core/error.h"

namespace vl {
namespace binding {

struct Completion;
void deliver_completion(Napi::Env env, Napi::Function, void*, Completion* c);
using CompletionTsfn = Napi::TypedThreadSafeFunction<void, Completion, deliver_completion>;

struct AddonData {
  Napi::FunctionReference tensor_constructor;
  Napi::ObjectReference error_classes;  // code name -> constructor, registered by lib/errors.ts
  CompletionTsfn completions;
  int pending = 0;  // completions in flight; the TSFN keeps the loop alive only while > 0
};

AddonData& addon_data(Napi::Env env);

// A JavaScript error of the class registered for `code` (plain Error with .code before registration).
Napi::Error make_error(Napi::Env env, ErrorCode code, const std::string& message);

// Runs a binding body; native errors become typed JavaScript exceptions.
template <typename F>
auto guarded(Napi::Env env, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const Error& e) {
    throw make_error(env, e.code(), e.what());
  } catch (const std::bad_alloc&) {
    throw make_error(env, ErrorCode::OutOfMemory, "out of host memory");
  } catch (const std::exception& e) {
    throw make_error(env, ErrorCode::Runtime, e.what());
  }
}

// Exports a function whose body is guarded.
#define VL_EXPORT(exports, name, fn)                                                                      \
  exports.Set(name, Napi::Function::New(exports.Env(), [](const Napi::CallbackInfo& info) -> Napi::Value { \
                return ::vl::binding::guarded(info.Env(), [&] { return fn(info); });                      \
              }, name))

// Work finished on a stream thread, delivered on the JavaScript thread.
struct Completion {
  std::string error;
  std::function<void(Napi::Env, const std::string& error)> deliver;
};
// Call on the JavaScript thread before queuing the work; the returned handle
// is what the stream thread later posts to (it never touches the Env itself).
CompletionTsfn begin_completion(Napi::Env env);
// Safe from any thread.
void post_completion(CompletionTsfn tsfn, Completion* c);

}  // namespace binding
}  // namespace vl
