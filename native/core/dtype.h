// Element types of tensors.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace vl {

enum class DType : uint8_t { F32 = 0, BF16 = 1, F16 = 2, I32 = 3, I64 = 4, U8 = 5 };
constexpr int kNumDTypes = 6;

size_t dtype_size(DType dt);
const char* dtype_name(DType dt);
// Throws a DType error listing the valid names.
DType parse_dtype(const std::string& name);
bool dtype_is_float(DType dt);

}  // namespace vl
