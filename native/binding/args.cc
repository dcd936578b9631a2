#include "binding/args.h"

#include <cmath>

#include "binding/addon_data.h"
#include "binding/tensor_handle.h"

namespace vl {
namespace binding {

Napi::Value Args::at(size_t i) const { return info[i]; }

double Args::number(size_t i, const char* name) const {
  Napi::Value v = info[i];
  if (!v.IsNumber()) fail(ErrorCode::Argument, fn, ": ", name, " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

int64_t Args::integer(size_t i, const char* name) const {
  const double d = number(i, name);
  VL_CHECK(std::isfinite(d) && std::trunc(d) == d && std::fabs(d) <= 9007199254740991.0, ErrorCode::Argument, fn,
           ": ", name, " must be an integer, got ", d);
  return static_cast<int64_t>(d);
}

bool Args::boolean(size_t i, const char* name) const {
  Napi::Value v = info[i];
  if (!v.IsBoolean()) fail(ErrorCode::Argument, fn, ": ", name, " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string Args::string(size_t i, const char* name) const {
  Napi::Value v = info[i];
  if (!v.IsString()) fail(ErrorCode::Argument, fn, ": ", name, " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

std::vector<int64_t> Args::ints(size_t i, const char* name) const {
  Napi::Value v = info[i];
  if (!v.IsArray()) fail(ErrorCode::Argument, fn, ": ", name, " must be an array of integers");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value e = a.Get(k);
    const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : NAN;
    VL_CHECK(std::isfinite(d) && std::trunc(d) == d && std::fabs(d) <= 9007199254740991.0, ErrorCode::Shape, fn,
             ": ", name, " must hold integers; element ", k, " is ", e.ToString().Utf8Value());
    out[k] = static_cast<int64_t>(d);
  }
  return out;
}

Shape Args::shape(size_t i, const char* name) const {
  Shape s = ints(i, name);
  check_shape(s, fn);
  return s;
}

DType Args::dtype(size_t i) const { return parse_dtype(string(i, "dtype")); }

Device Args::device(size_t i) const { return parse_device(string(i, "device")); }

TensorPtr Args::tensor(size_t i) const { return TensorHandle::unwrap(info[i], fn); }

TensorPtr Args::optional_tensor(size_t i) const {
  Napi::Value v = at(i);
  return v.IsNull() || v.IsUndefined() ? nullptr : tensor(i);
}

namespace {
// The elements of array argument i, each checked by `element`.
template <typename T, typename F>
std::vector<T> array_of(const Args& a, size_t i, const char* name, const char* what, F&& element) {
  Napi::Value v = a.info[i];
  if (!v.IsArray()) fail(ErrorCode::Argument, a.fn, ": ", name, " must be an array of ", what);
  Napi::Array arr = v.As<Napi::Array>();
  std::vector<T> out;
  out.reserve(arr.Length());
  for (uint32_t k = 0; k < arr.Length(); ++k) out.push_back(element(arr.Get(k), k));
  return out;
}
}  // namespace

std::vector<TensorPtr> Args::tensors(size_t i, const char* name) const {
  return array_of<TensorPtr>(*this, i, name, "tensors", [&](Napi::Value e, uint32_t k) {
    const std::string what = std::string(name) + "[" + std::to_string(k) + "]";
    return TensorHandle::unwrap(e, (std::string(fn) + ": " + what).c_str());
  });
}

std::vector<double> Args::numbers(size_t i, const char* name) const {
  return array_of<double>(*this, i, name, "numbers", [&](Napi::Value e, uint32_t k) {
    if (!e.IsNumber()) fail(ErrorCode::Argument, fn, ": ", name, "[", k, "] must be a number");
    return e.As<Napi::Number>().DoubleValue();
  });
}

std::vector<bool> Args::booleans(size_t i, const char* name) const {
  return array_of<bool>(*this, i, name, "booleans", [&](Napi::Value e, uint32_t k) {
    if (!e.IsBoolean()) fail(ErrorCode::Argument, fn, ": ", name, "[", k, "] must be a boolean");
    return e.As<Napi::Boolean>().Value();
  });
}

}  // namespace binding
}  // namespace vl
