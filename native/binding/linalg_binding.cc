// linear, packed linear / SwiGLU, matmul, patch conv. A packed weight
// crosses as its u8 tensor plus its description:
//   [n, k, dtype, layout, kblock, swiglu]
#include "binding/addon_data.h"
#include "binding/args.h"
#include "binding/module_registry.h"
#include "binding/tensor_handle.h"
#include "core/cpu_features.h"
#include "cpu/gemm/gemm.h"
#include "cpu/simd/gemm_isa.h"
#include "ops/linalg.h"

namespace vl {
namespace binding {
namespace {

Napi::Value wrap(const Napi::CallbackInfo& info, TensorPtr t) { return TensorHandle::wrap(info.Env(), std::move(t)); }


Napi::Array describe(Napi::Env env, const ops::PackedWeight& w) {
  Napi::Array out = Napi::Array::New(env, 7);
  out.Set(0u, TensorHandle::wrap(env, w.data));
  out.Set(1u, Napi::Number::New(env, static_cast<double>(w.n)));
  out.Set(2u, Napi::Number::New(env, static_cast<double>(w.k)));
  out.Set(3u, Napi::String::New(env, dtype_name(w.dtype)));
  out.Set(4u, Napi::String::New(env, w.layout));
  out.Set(5u, Napi::Number::New(env, static_cast<double>(w.kblock)));
  out.Set(6u, Napi::Boolean::New(env, w.swiglu));
  return out;
}

// packed tensor at i, description array at i + 1.
ops::PackedWeight packed_arg(const Args& a, size_t i) {
  ops::PackedWeight w;
  w.data = a.tensor(i);
  Napi::Value v = a.at(i + 1);
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 6)
    fail(ErrorCode::Argument, a.fn, ": packed weight description must be [n, k, dtype, layout, kblock, swiglu]");
  Napi::Array d = v.As<Napi::Array>();
  auto num = [&](uint32_t j, const char* name) {
    Napi::Value e = d.Get(j);
    if (!e.IsNumber()) fail(ErrorCode::Argument, a.fn, ": packed weight ", name, " must be a number");
    const double x = e.As<Napi::Number>().DoubleValue();
    VL_CHECK(x >= 0 && x == static_cast<double>(static_cast<int64_t>(x)), ErrorCode::Argument, a.fn, ": packed weight ",
             name, " must be a non-negative integer, got ", x);
    return static_cast<int64_t>(x);
  };
  w.n = num(0, "n");
  w.k = num(1, "k");
  if (!d.Get(2u).IsString() || !d.Get(3u).IsString() || !d.Get(5u).IsBoolean())
    fail(ErrorCode::Argument, a.fn, ": packed weight description must be [n, k, dtype, layout, kblock, swiglu]");
  w.dtype = parse_dtype(d.Get(2u).As<Napi::String>().Utf8Value());
  w.layout = d.Get(3u).As<Napi::String>().Utf8Value();
  w.kblock = num(4, "kblock");
  w.swiglu = d.Get(5u).As<Napi::Boolean>().Value();
  return w;
}

// The precision argument at index i ('f32', 'bf16' or 'f16').
ops::MathPrecision precision_arg(const Args& a, size_t i) { return ops::parse_precision(a.string(i, "precision"), a.fn); }

// linear(x, weight, bias | null, residual | null, precision)
Napi::Value linear(const Napi::CallbackInfo& info) {
  Args a{info, "linear"};
  return wrap(info, ops::linear(a.tensor(0), a.tensor(1), a.optional_tensor(2), a.optional_tensor(3), precision_arg(a, 4)));
}

// linearPacked(x, packed, description, bias | null, residual | null)
Napi::Value linear_packed(const Napi::CallbackInfo& info) {
  Args a{info, "linear"};
  return wrap(info, ops::linear_packed(a.tensor(0), packed_arg(a, 1), a.optional_tensor(3), a.optional_tensor(4)));
}

// swiglu(x, packed, description, residual | null, outDtype)
Napi::Value swiglu(const Napi::CallbackInfo& info) {
  Args a{info, "swiglu"};
  return wrap(info, ops::swiglu(a.tensor(0), packed_arg(a, 1), a.optional_tensor(3), a.dtype(4)));
}

// packLinear(weight, dtype) -> [tensor, n, k, dtype, layout, kblock, swiglu]
Napi::Value pack_linear(const Napi::CallbackInfo& info) {
  Args a{info, "packLinear"};
  return describe(info.Env(), ops::pack_linear(a.tensor(0), a.dtype(1)));
}

// packSwiGLU(w1, w2, dtype) -> [tensor, hidden, k, dtype, layout, kblock, swiglu]
Napi::Value pack_swiglu(const Napi::CallbackInfo& info) {
  Args a{info, "packSwiGLU"};
  return describe(info.Env(), ops::pack_swiglu(a.tensor(0), a.tensor(1), a.dtype(2)));
}

// matmul(a, b, transposeB, precision)
Napi::Value matmul(const Napi::CallbackInfo& info) {
  Args a{info, "matmul"};
  return wrap(info, ops::matmul(a.tensor(0), a.tensor(1), a.boolean(2, "transposeB"), precision_arg(a, 3)));
}

// convPatch(x, weight, bias | null, patch, precision)
Napi::Value conv_patch(const Napi::CallbackInfo& info) {
  Args a{info, "convPatch"};
  return wrap(info, ops::conv_patch(a.tensor(0), a.tensor(1), a.optional_tensor(2), a.integer(3, "patch"),
                                    precision_arg(a, 4)));
}

// gemmInfo() -> { kernels, layout, bf16: 'vdpbf16ps' | 'widen', tile, bf16Tile, blocking }
Napi::Value gemm_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const GemmKernels& k = gemm_kernels();
  Napi::Object o = Napi::Object::New(env);
  o.Set("kernels", Napi::String::New(env, k.name));
  o.Set("layout", Napi::String::New(env, ops::packed_layout()));
  auto tile = [&](const GemmVariant& v) {
    Napi::Array t = Napi::Array::New(env, 2);
    t.Set(0u, Napi::Number::New(env, v.mr));
    t.Set(1u, Napi::Number::New(env, v.nr));
    return t;
  };
  o.Set("tile", tile(k.f32));
  o.Set("bf16Tile", tile(k.bf16));
  const gemm::Blocking b = gemm::blocking();
  Napi::Object blk = Napi::Object::New(env);
  blk.Set("mc", Napi::Number::New(env, static_cast<double>(b.mc)));
  blk.Set("nc", Napi::Number::New(env, static_cast<double>(b.nc)));
  blk.Set("kc", Napi::Number::New(env, static_cast<double>(b.kc)));
  o.Set("blocking", blk);
  return o;
}

}  // namespace

void init_linalg(Napi::Object exports) {
  VL_EXPORT(exports, "linear", linear);
  VL_EXPORT(exports, "linearPacked", linear_packed);
  VL_EXPORT(exports, "swiglu", swiglu);
  VL_EXPORT(exports, "packLinear", pack_linear);
  VL_EXPORT(exports, "packSwiGLU", pack_swiglu);
  VL_EXPORT(exports, "matmul", matmul);
  VL_EXPORT(exports, "convPatch", conv_patch);
  VL_EXPORT(exports, "gemmInfo", gemm_info);
}

VL_BINDING_MODULE(init_linalg);

}  // namespace binding
}  // namespace vl
