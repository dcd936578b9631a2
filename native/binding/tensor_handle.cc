#include "binding/tensor_handle.h"

#include "binding/addon_data.h"
#include "core/backend.h"

namespace vl {
namespace binding {

namespace {
MemoryStats& stats_of(const TensorImpl& t) {
  Backend* b = find_backend(t.device().type);
  return b->stats(t.device());
}
}  // namespace

Napi::Function TensorHandle::define(Napi::Env env) {
  return DefineClass(env, "TensorHandle",
                     {
                         InstanceMethod<&TensorHandle::dispose>("dispose"),
                         InstanceMethod<&TensorHandle::is_disposed>("isDisposed"),
                         InstanceMethod<&TensorHandle::meta>("meta"),
                         InstanceMethod<&TensorHandle::shares_storage>("sharesStorage"),
                     });
}

TensorHandle::TensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorHandle>(info) {
  // Only wrap() creates handles, passing the tensor through an External.
  if (info.Length() != 1 || !info[0].IsExternal())
    throw make_error(info.Env(), ErrorCode::Argument, "TensorHandle cannot be constructed from JavaScript");
  attach(*info[0].As<Napi::External<TensorPtr>>().Data());
}

TensorHandle::~TensorHandle() { release(true); }

Napi::Object TensorHandle::wrap(Napi::Env env, TensorPtr impl) {
  TensorPtr holder = std::move(impl);
  return addon_data(env).tensor_constructor.New({Napi::External<TensorPtr>::New(env, &holder)});
}

Napi::Array TensorHandle::wrap_all(Napi::Env env, const std::vector<TensorPtr>& impls) {
  Napi::Array out = Napi::Array::New(env, impls.size());
  for (size_t i = 0; i < impls.size(); ++i) out.Set(static_cast<uint32_t>(i), wrap(env, impls[i]));
  return out;
}

void TensorHandle::attach(TensorPtr impl) {
  impl_ = std::move(impl);
  MemoryStats& s = stats_of(*impl_);
  s.live_tensors.fetch_add(1);
  if (impl_->storage()->handle_refs.fetch_add(1) == 0)
    s.live_bytes.fetch_add(static_cast<int64_t>(impl_->storage()->nbytes()));
}

void TensorHandle::release(bool by_gc) {
  if (!impl_) return;
  MemoryStats& s = stats_of(*impl_);
  s.live_tensors.fetch_sub(1);
  if (impl_->storage()->handle_refs.fetch_sub(1) == 1)
    s.live_bytes.fetch_sub(static_cast<int64_t>(impl_->storage()->nbytes()));
  if (by_gc) s.gc_released.fetch_add(1);
  impl_.reset();
}

const TensorPtr& TensorHandle::get(Napi::Env env) const {
  if (!impl_) throw make_error(env, ErrorCode::Disposed, "the tensor was disposed and cannot be used");
  return impl_;
}

TensorPtr TensorHandle::unwrap(Napi::Value value, const char* what) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(addon_data(env).tensor_constructor.Value()))
    throw make_error(env, ErrorCode::Argument, std::string(what) + ": expected a tensor");
  TensorHandle* h = Unwrap(value.As<Napi::Object>());
  if (!h->impl_)
    throw make_error(env, ErrorCode::Disposed, std::string(what) + ": the tensor was disposed and cannot be used");
  return h->impl_;
}

Napi::Value TensorHandle::dispose(const Napi::CallbackInfo& info) {
  release(false);
  return info.Env().Undefined();
}

Napi::Value TensorHandle::is_disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !impl_);
}

// [dtype, device, shape, strides, offset, contiguous] in one call.
Napi::Value TensorHandle::meta(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const TensorPtr& t = get(env);
  Napi::Array shape = Napi::Array::New(env, t->ndim()), strides = Napi::Array::New(env, t->ndim());
  for (int i = 0; i < t->ndim(); ++i) {
    shape.Set(i, Napi::Number::New(env, static_cast<double>(t->shape()[i])));
    strides.Set(i, Napi::Number::New(env, static_cast<double>(t->strides()[i])));
  }
  Napi::Array out = Napi::Array::New(env, 6);
  out.Set(0u, Napi::String::New(env, dtype_name(t->dtype())));
  out.Set(1u, Napi::String::New(env, t->device().str()));
  out.Set(2u, shape);
  out.Set(3u, strides);
  out.Set(4u, Napi::Number::New(env, static_cast<double>(t->offset())));
  out.Set(5u, Napi::Boolean::New(env, t->is_contiguous()));
  return out;
}

Napi::Value TensorHandle::shares_storage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const TensorPtr& a = get(env);
    const TensorPtr b = unwrap(info[0], "sharesStorage");
    return Napi::Boolean::New(env, a->storage() == b->storage());
  });
}

}  // namespace binding
}  // namespace vl
