#include "core/error.h"

namespace vl {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::Shape: return "VL_SHAPE";
    case ErrorCode::DType: return "VL_DTYPE";
    case ErrorCode::Device: return "VL_DEVICE";
    case ErrorCode::Disposed: return "VL_DISPOSED";
    case ErrorCode::Argument: return "VL_ARGUMENT";
    case ErrorCode::OutOfMemory: return "VL_OOM";
    case ErrorCode::NotImplemented: return "VL_NOT_IMPLEMENTED";
    case ErrorCode::Runtime: return "VL_RUNTIME";
  }
  return "VL_RUNTIME";
}

}  // namespace vl
