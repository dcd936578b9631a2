// attention(q, k, v, qPos, kPos, rope, scale, returnLse) -> [out] or [out, lse].
// A position argument is undefined/null, {x: tensor, y: tensor} or
// {cols, step, bias, indexOffset}; lib/ops/attention.ts builds these.
#include <cmath>

#include "binding/addon_data.h"
#include "binding/args.h"
#include "binding/module_registry.h"
#include "binding/tensor_handle.h"
#include "ops/attention.h"

namespace vl {
namespace binding {
namespace {

std::optional<ops::RopePositions> positions(const Napi::Value& value, const char* name) {
  if (value.IsUndefined() || value.IsNull()) return std::nullopt;
  if (!value.IsObject()) fail(ErrorCode::Argument, "attention: ", name, " must be an object");
  Napi::Object o = value.As<Napi::Object>();
  ops::RopePositions p;
  if (o.Has("x") || o.Has("y")) {
    p.x = TensorHandle::unwrap(o.Get("x"), "attention");
    p.y = TensorHandle::unwrap(o.Get("y"), "attention");
    return p;
  }
  auto number = [&](const char* key, double fallback) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return fallback;
    if (!v.IsNumber()) fail(ErrorCode::Argument, "attention: ", name, ".", key, " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  };
  auto integer = [&](const char* key, double fallback) {
    const double d = number(key, fallback);
    VL_CHECK(std::isfinite(d) && std::trunc(d) == d && std::fabs(d) <= 9007199254740991.0, ErrorCode::Argument,
             "attention: ", name, ".", key, " must be an integer, got ", d);
    return static_cast<int64_t>(d);
  };
  p.cols = integer("cols", 0);
  p.step = number("step", 1.0);
  p.bias = number("bias", 0.0);
  p.index_offset = integer("indexOffset", 0);
  return p;
}

Napi::Value attention(const Napi::CallbackInfo& info) {
  Args a{info, "attention"};
  ops::AttentionOptions o;
  o.q_pos = positions(info[3], "qPos");
  o.k_pos = positions(info[4], "kPos");
  o.rope = a.boolean(5, "rope");
  if (!info[6].IsUndefined() && !info[6].IsNull()) o.scale = a.number(6, "scale");
  o.return_lse = a.boolean(7, "returnLse");
  ops::AttentionResult r = ops::attention(a.tensor(0), a.tensor(1), a.tensor(2), o);
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  out.Set(uint32_t{0}, TensorHandle::wrap(env, r.out));
  if (r.lse) out.Set(uint32_t{1}, TensorHandle::wrap(env, r.lse));
  return out;
}

void init_attention(Napi::Object exports) { VL_EXPORT(exports, "attention", attention); }

}  // namespace

VL_BINDING_MODULE(init_attention);

}  // namespace binding
}  // namespace vl
