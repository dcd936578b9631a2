// Tensor creation, views and ops. Each function checks its arguments, calls
// the launcher (which queues the work) and returns a new handle at once.
#include "binding/args.h"
#include "binding/module_registry.h"
#include "binding/addon_data.h"
#include "binding/tensor_handle.h"
#include "core/backend.h"
#include "ops/ops.h"

namespace vl {
namespace binding {
namespace {

Napi::Value wrap(const Napi::CallbackInfo& info, TensorPtr t) { return TensorHandle::wrap(info.Env(), std::move(t)); }

// fromHost(typedArray, shape, dtype, device)
Napi::Value from_host(const Napi::CallbackInfo& info) {
  Args a{info, "tensor"};
  Napi::Value v = a.at(0);
  if (!v.IsTypedArray()) fail(ErrorCode::Argument, "tensor: data must be a typed array");
  Napi::TypedArray arr = v.As<Napi::TypedArray>();
  ops::HostKind kind;
  switch (arr.TypedArrayType()) {
    case napi_float32_array: kind = ops::HostKind::F32; break;
    case napi_float64_array: kind = ops::HostKind::F64; break;
    case napi_int32_array: kind = ops::HostKind::I32; break;
    case napi_bigint64_array: kind = ops::HostKind::I64; break;
    case napi_uint8_array: kind = ops::HostKind::U8; break;
    case napi_uint16_array: kind = ops::HostKind::U16Bits; break;
    default:
      fail(ErrorCode::DType, "tensor: unsupported typed array; expected Float32Array, Float64Array, Int32Array, "
                             "BigInt64Array, Uint8Array or Uint16Array (raw bf16/f16 bits)");
  }
  const char* base = static_cast<const char*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  return wrap(info, ops::from_host(base, kind, static_cast<int64_t>(arr.ElementLength()), a.shape(1, "shape"),
                                   a.dtype(2), a.device(3)));
}

Napi::Value full(const Napi::CallbackInfo& info) {
  Args a{info, "full"};
  return wrap(info, ops::full(a.shape(0, "shape"), a.dtype(1), a.device(2), a.number(3, "value")));
}

Napi::Value arange(const Napi::CallbackInfo& info) {
  Args a{info, "arange"};
  return wrap(info, ops::arange(a.number(0, "start"), a.number(1, "step"), a.integer(2, "length"), a.dtype(3),
                                a.device(4)));
}

// random(shape, dtype, device, normal, a, b, seed, stream)
Napi::Value random(const Napi::CallbackInfo& info) {
  Args a{info, "random"};
  const int64_t seed = a.integer(6, "seed"), stream = a.integer(7, "stream");
  VL_CHECK(seed >= 0 && stream >= 0, ErrorCode::Argument, "random: seed must be a non-negative integer, got ", seed);
  return wrap(info, ops::random(a.shape(0, "shape"), a.dtype(1), a.device(2), a.boolean(3, "normal"),
                                a.number(4, "a"), a.number(5, "b"), static_cast<uint64_t>(seed),
                                static_cast<uint64_t>(stream)));
}

Napi::Value copy(const Napi::CallbackInfo& info) {
  Args a{info, "to"};
  return wrap(info, ops::copy(a.tensor(0), a.dtype(1)));
}

Napi::Value assign(const Napi::CallbackInfo& info) {
  Args a{info, "assign"};
  ops::assign(a.tensor(0), a.tensor(1));
  return info.Env().Undefined();
}

Napi::Value contiguous(const Napi::CallbackInfo& info) {
  Args a{info, "contiguous"};
  return wrap(info, ops::contiguous(a.tensor(0)));
}

Napi::Value to_device(const Napi::CallbackInfo& info) {
  Args a{info, "to"};
  return wrap(info, ops::to_device(a.tensor(0), a.device(1)));
}

Napi::Value reshape(const Napi::CallbackInfo& info) {
  Args a{info, "reshape"};
  return wrap(info, view_reshape(a.tensor(0), a.ints(1, "shape")));
}

Napi::Value permute(const Napi::CallbackInfo& info) {
  Args a{info, "permute"};
  return wrap(info, view_permute(a.tensor(0), a.ints(1, "dims")));
}

Napi::Value as_strided(const Napi::CallbackInfo& info) {
  Args a{info, "asStrided"};
  return wrap(info, view_as_strided(a.tensor(0), a.shape(1, "shape"), a.ints(2, "strides"), a.integer(3, "offset")));
}

// concat([tensors], dim)
Napi::Value concat(const Napi::CallbackInfo& info) {
  Args a{info, "concat"};
  if (!info[0].IsArray()) fail(ErrorCode::Argument, "concat: expected an array of tensors");
  Napi::Array list = info[0].As<Napi::Array>();
  std::vector<TensorPtr> parts;
  for (uint32_t i = 0; i < list.Length(); ++i) parts.push_back(TensorHandle::unwrap(list.Get(i), "concat"));
  return wrap(info, ops::concat(parts, a.integer(1, "dim")));
}

Napi::Value binary(const Napi::CallbackInfo& info) {
  Args a{info, "binary"};
  return wrap(info, ops::binary(a.string(0, "op"), a.tensor(1), a.tensor(2)));
}

Napi::Value sum(const Napi::CallbackInfo& info) {
  Args a{info, "sum"};
  return wrap(info, ops::sum(a.tensor(0), a.ints(1, "dims"), a.boolean(2, "keepdim")));
}

// read(tensor, dtype) -> Promise<ArrayBuffer>: the buffer is made here and
// filled by the device's stream; the promise settles on the JavaScript thread.
Napi::Value read(const Napi::CallbackInfo& info) {
  Args a{info, "data"};
  Napi::Env env = info.Env();
  TensorPtr t = a.tensor(0);
  const DType dtype = a.dtype(1);
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, static_cast<size_t>(t->numel()) * dtype_size(dtype));
  auto deferred = std::make_shared<Napi::Promise::Deferred>(env);
  auto keep = std::make_shared<Napi::Reference<Napi::ArrayBuffer>>(Napi::Persistent(buffer));
  Napi::Promise promise = deferred->Promise();
  CompletionTsfn tsfn = begin_completion(env);
  ops::read(t, dtype, buffer.Data(), [tsfn, deferred, keep](const std::string& error) {
    auto* c = new Completion{error, [deferred, keep](Napi::Env e, const std::string& err) {
                               if (err.empty())
                                 deferred->Resolve(keep->Value());
                               else
                                 deferred->Reject(make_error(e, ErrorCode::Runtime, err).Value());
                               keep->Reset();
                             }};
    post_completion(tsfn, c);
  });
  return promise;
}

// readSync(tensor, dtype) -> ArrayBuffer: blocks the JavaScript thread.
Napi::Value read_sync(const Napi::CallbackInfo& info) {
  Args a{info, "dataSync"};
  Napi::Env env = info.Env();
  TensorPtr t = a.tensor(0);
  const DType dtype = a.dtype(1);
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, static_cast<size_t>(t->numel()) * dtype_size(dtype));
  auto done = std::make_shared<Event>();
  ops::read(t, dtype, buffer.Data(), [done](const std::string& error) { done->signal(error); });
  done->wait();
  if (!done->error().empty()) throw make_error(env, ErrorCode::Runtime, done->error());
  return buffer;
}

// synchronize(device) -> Promise<void>, settled once queued work has run.
Napi::Value synchronize(const Napi::CallbackInfo& info) {
  Args a{info, "synchronize"};
  Napi::Env env = info.Env();
  const Device device = a.device(0);
  Stream& stream = backend_for(device).stream(device);
  auto deferred = std::make_shared<Napi::Promise::Deferred>(env);
  CompletionTsfn tsfn = begin_completion(env);
  stream.submit([tsfn, deferred] {
    post_completion(tsfn, new Completion{"", [deferred](Napi::Env e, const std::string&) { deferred->Resolve(e.Undefined()); }});
  });
  return deferred->Promise();
}

}  // namespace

void init_ops(Napi::Object exports) {
  VL_EXPORT(exports, "fromHost", from_host);
  VL_EXPORT(exports, "full", full);
  VL_EXPORT(exports, "arange", arange);
  VL_EXPORT(exports, "random", random);
  VL_EXPORT(exports, "copy", copy);
  VL_EXPORT(exports, "assign", assign);
  VL_EXPORT(exports, "contiguous", contiguous);
  VL_EXPORT(exports, "toDevice", to_device);
  VL_EXPORT(exports, "reshape", reshape);
  VL_EXPORT(exports, "permute", permute);
  VL_EXPORT(exports, "asStrided", as_strided);
  VL_EXPORT(exports, "binary", binary);
  VL_EXPORT(exports, "concat", concat);
  VL_EXPORT(exports, "sum", sum);
  VL_EXPORT(exports, "read", read);
  VL_EXPORT(exports, "readSync", read_sync);
  VL_EXPORT(exports, "synchronize", synchronize);
}

VL_BINDING_MODULE(init_ops);

}  // namespace binding
}  // namespace vl
