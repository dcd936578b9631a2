// attention(q, k, v, qPos, kPos, rope, scale, returnLse) -> [out] or [out, lse].
// attentionBackward(dOut, q, k, v, out, lse, qPos, kPos, rope, scale, packed)
//   -> [dq, dk, dv] or, with packed 'qkv' | 'kv', [dq, dk, dv, packed].
// A position argument is undefined/null, {x: tensor, y: tensor} or
// {cols, step, bias, indexOffset}; lib/ops/attention.ts builds these.
#include <cmath>
#include <string>

#include "binding/addon_data.h"
#include "binding/args.h"
#include "binding/module_registry.h"
#include "binding/tensor_handle.h"
#include "ops/attention.h"

namespace vl {
namespace binding {
namespace {

std::optional<ops::RopePositions> positions(const Napi::Value& value, const char* name, const char* fn) {
  if (value.IsUndefined() || value.IsNull()) return std::nullopt;
  if (!value.IsObject()) fail(ErrorCode::Argument, fn, ": ", name, " must be an object");
  Napi::Object o = value.As<Napi::Object>();
  ops::RopePositions p;
  if (o.Has("x") || o.Has("y")) {
    p.x = TensorHandle::unwrap(o.Get("x"), fn);
    p.y = TensorHandle::unwrap(o.Get("y"), fn);
    return p;
  }
  auto number = [&](const char* key, double fallback) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return fallback;
    if (!v.IsNumber()) fail(ErrorCode::Argument, fn, ": ", name, ".", key, " must be a number");
    return v.As<Napi::Number>().DoubleValue();
  };
  auto integer = [&](const char* key, double fallback) {
    const double d = number(key, fallback);
    VL_CHECK(std::isfinite(d) && std::trunc(d) == d && std::fabs(d) <= 9007199254740991.0, ErrorCode::Argument, fn,
             ": ", name, ".", key, " must be an integer, got ", d);
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
  o.q_pos = positions(info[3], "qPos", "attention");
  o.k_pos = positions(info[4], "kPos", "attention");
  o.rope = a.boolean(5, "rope");
  if (!info[6].IsUndefined() && !info[6].IsNull()) o.scale = a.number(6, "scale");
  o.return_lse = a.boolean(7, "returnLse");
  o.precision = ops::parse_precision(a.string(8, "precision"), "attention");
  ops::AttentionResult r = ops::attention(a.tensor(0), a.tensor(1), a.tensor(2), o);
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  out.Set(uint32_t{0}, TensorHandle::wrap(env, r.out));
  if (r.lse) out.Set(uint32_t{1}, TensorHandle::wrap(env, r.lse));
  return out;
}

Napi::Value attention_backward(const Napi::CallbackInfo& info) {
  constexpr const char* fn = "attentionBackward";
  Args a{info, fn};
  ops::AttentionBackwardOptions o;
  o.q_pos = positions(info[6], "qPos", fn);
  o.k_pos = positions(info[7], "kPos", fn);
  o.rope = a.boolean(8, "rope");
  if (!info[9].IsUndefined() && !info[9].IsNull()) o.scale = a.number(9, "scale");
  if (!info[10].IsUndefined() && !info[10].IsNull()) {
    const std::string packed = a.string(10, "packed");
    if (packed == "qkv") {
      o.layout = ops::AttentionGradLayout::PackedQKV;
    } else if (packed == "kv") {
      o.layout = ops::AttentionGradLayout::PackedKV;
    } else {
      fail(ErrorCode::Argument, fn, ": packed must be 'qkv' or 'kv', got '", packed, "'");
    }
  }
  o.precision = ops::parse_precision(a.string(11, "precision"), fn);
  ops::AttentionGrads g =
      ops::attention_backward(a.tensor(0), a.tensor(1), a.tensor(2), a.tensor(3), a.tensor(4), a.tensor(5), o);
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  out.Set(uint32_t{0}, TensorHandle::wrap(env, g.dq));
  out.Set(uint32_t{1}, TensorHandle::wrap(env, g.dk));
  out.Set(uint32_t{2}, TensorHandle::wrap(env, g.dv));
  if (g.packed) out.Set(uint32_t{3}, TensorHandle::wrap(env, g.packed));
  return out;
}

void init_attention(Napi::Object exports) {
  VL_EXPORT(exports, "attention", attention);
  VL_EXPORT(exports, "attentionBackward", attention_backward);
}

}  // namespace

VL_BINDING_MODULE(init_attention);

}  // namespace binding
}  // namespace vl
