// The JavaScript object that owns one reference to a native tensor.
// dispose() releases it at once; the GC finalizer is only a safety net.
#pragma once
#include <napi.h>

#include "core/tensor.h"

namespace vl {
namespace binding {

class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static Napi::Function define(Napi::Env env);
  static Napi::Object wrap(Napi::Env env, TensorPtr impl);
  // An array of handles, for ops with several outputs.
  static Napi::Array wrap_all(Napi::Env env, const std::vector<TensorPtr>& impls);
  // The tensor behind a handle argument; throws a Disposed/Argument error.
  static TensorPtr unwrap(Napi::Value value, const char* what);

  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;

 private:
  void attach(TensorPtr impl);
  void release(bool by_gc);
  const TensorPtr& get(Napi::Env env) const;

  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value is_disposed(const Napi::CallbackInfo& info);
  Napi::Value meta(const Napi::CallbackInfo& info);
  Napi::Value shares_storage(const Napi::CallbackInfo& info);

  TensorPtr impl_;
};

}  // namespace binding
}  // namespace vl
