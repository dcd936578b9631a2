#include "core/dtype.h"

#include "core/error.h"

namespace vl {

size_t dtype_size(DType dt) {
  switch (dt) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::F16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::U8: return 1;
  }
  return 0;
}

const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::U8: return "u8";
  }
  return "?";
}

DType parse_dtype(const std::string& name) {
  for (int i = 0; i < kNumDTypes; ++i) {
    const DType dt = static_cast<DType>(i);
    if (name == dtype_name(dt)) return dt;
  }
  fail(ErrorCode::DType, "unknown dtype '", name, "': expected one of f32, bf16, f16, i32, i64, u8");
}

bool dtype_is_float(DType dt) { return dt == DType::F32 || dt == DType::BF16 || dt == DType::F16; }

}  // namespace vl
