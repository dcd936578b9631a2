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

}  // namespace binding
}  // namespace vl
