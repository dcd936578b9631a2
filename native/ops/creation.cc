#include <cmath>
#include <cstring>

#include "core/backend.h"
#include "core/error.h"
#include "core/half.h"
#include "ops/ops.h"

namespace vl {
namespace ops {

TensorPtr full(const Shape& shape, DType dtype, Device device, double value) {
  if (!dtype_is_float(dtype))
    VL_CHECK(std::isfinite(value) && std::trunc(value) == value, ErrorCode::DType, "full: value ", value,
             " is not an integer, so it cannot fill a ", dtype_name(dtype), " tensor");
  TensorPtr out = empty_tensor(shape, dtype, device);
  if (out->numel() > 0) launch("fill", {}, {out}, Attrs().set("value", value));
  return out;
}

TensorPtr arange(double start, double step, int64_t n, DType dtype, Device device) {
  VL_CHECK(n >= 0, ErrorCode::Argument, "arange: the range has a negative length");
  if (!dtype_is_float(dtype))
    VL_CHECK(std::trunc(start) == start && std::trunc(step) == step, ErrorCode::DType,
             "arange: start and step must be integers for dtype ", dtype_name(dtype));
  TensorPtr out = empty_tensor({n}, dtype, device);
  if (n > 0) launch("arange", {}, {out}, Attrs().set("start", start).set("step", step));
  return out;
}

TensorPtr random(const Shape& shape, DType dtype, Device device, bool normal, double a, double b, uint64_t seed,
                 uint64_t stream) {
  VL_CHECK(dtype_is_float(dtype), ErrorCode::DType, normal ? "randn" : "rand", ": expected a float dtype (f32, bf16, f16), got ",
           dtype_name(dtype));
  TensorPtr out = empty_tensor(shape, dtype, device);
  if (out->numel() > 0)
    launch("random", {}, {out},
           Attrs()
               .set("seed", static_cast<double>(seed))
               .set("stream", static_cast<double>(stream))
               .set("normal", normal ? 1.0 : 0.0)
               .set("a", a)
               .set("b", b));
  return out;
}

namespace {

DType host_dtype(HostKind kind, DType target) {
  switch (kind) {
    case HostKind::F32: return DType::F32;
    case HostKind::I32: return DType::I32;
    case HostKind::I64: return DType::I64;
    case HostKind::U8: return DType::U8;
    case HostKind::U16Bits: return target;
    case HostKind::F64: break;
  }
  return target;
}

const char* host_kind_name(HostKind kind) {
  switch (kind) {
    case HostKind::F32: return "Float32Array";
    case HostKind::F64: return "Float64Array";
    case HostKind::I32: return "Int32Array";
    case HostKind::I64: return "BigInt64Array";
    case HostKind::U8: return "Uint8Array";
    case HostKind::U16Bits: return "Uint16Array";
  }
  return "?";
}

// Doubles (JavaScript numbers) are converted here, on the caller's thread:
// each value is rounded once to the target type.
void convert_f64(const double* src, int64_t n, DType dtype, void* dst) {
  switch (dtype) {
    case DType::F32:
      for (int64_t i = 0; i < n; ++i) static_cast<float*>(dst)[i] = static_cast<float>(src[i]);
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = f32_to_bf16(f64_to_f32_round_odd(src[i]));
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(dst)[i] = f32_to_f16(f64_to_f32_round_odd(src[i]));
      return;
    default: break;
  }
  // Integer targets: only exact integers in range (no silent truncation).
  double lo = -2147483648.0, hi = 2147483647.0;
  if (dtype == DType::I64) lo = -9007199254740991.0, hi = 9007199254740991.0;
  if (dtype == DType::U8) lo = 0, hi = 255;
  for (int64_t i = 0; i < n; ++i) {
    const double v = src[i];
    VL_CHECK(std::trunc(v) == v && v >= lo && v <= hi, ErrorCode::DType, "value ", v, " at index ", i,
             " is not a ", dtype_name(dtype), " integer (expected an integer from ", lo, " to ", hi, ")");
    if (dtype == DType::I32) static_cast<int32_t*>(dst)[i] = static_cast<int32_t>(v);
    if (dtype == DType::I64) static_cast<int64_t*>(dst)[i] = static_cast<int64_t>(v);
    if (dtype == DType::U8) static_cast<uint8_t*>(dst)[i] = static_cast<uint8_t>(v);
  }
}

}  // namespace

TensorPtr from_host(const void* src, HostKind kind, int64_t count, const Shape& shape, DType dtype, Device device) {
  check_shape(shape, "tensor");
  const int64_t numel = shape_numel(shape);
  VL_CHECK(count == numel, ErrorCode::Shape, "tensor: shape ", shape_str(shape), " needs ", numel,
           " elements but the data has ", count);
  const bool float_target = dtype_is_float(dtype);
  const bool int_source = kind == HostKind::I32 || kind == HostKind::I64 || kind == HostKind::U8;
  // Float data never becomes an int tensor implicitly; raw 16-bit patterns only make bf16/f16.
  VL_CHECK(float_target || int_source || kind == HostKind::F64, ErrorCode::DType, "tensor: a ",
           host_kind_name(kind), " cannot make a ", dtype_name(dtype),
           " tensor; pass an Int32Array, BigInt64Array, Uint8Array or integer numbers");
  VL_CHECK(kind != HostKind::U16Bits || dtype == DType::BF16 || dtype == DType::F16, ErrorCode::DType,
           "tensor: a Uint16Array holds raw bf16/f16 bit patterns; it cannot make a ", dtype_name(dtype), " tensor");
  const Device cpu{DeviceType::CPU, 0};
  TensorPtr host;
  if (kind == HostKind::F64) {
    host = empty_tensor(shape, dtype, cpu);
    convert_f64(static_cast<const double*>(src), numel, dtype, host->data());
  } else {
    const DType sdt = host_dtype(kind, dtype);
    host = empty_tensor(shape, sdt, cpu);
    std::memcpy(host->data(), src, host->nbytes());
    if (sdt != dtype) host = copy(host, dtype);  // converted on the stream
  }
  return device == cpu ? host : to_device(host, device);
}

}  // namespace ops
}  // namespace vl
