// Errors raised by the native runtime. Each carries a stable code that the
// binding maps onto the typed JavaScript error classes (ShapeError, ...).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace vl {

enum class ErrorCode {
  Shape,           // VL_SHAPE
  DType,           // VL_DTYPE
  Device,          // VL_DEVICE
  Disposed,        // VL_DISPOSED
  Argument,        // VL_ARGUMENT
  OutOfMemory,     // VL_OOM
  NotImplemented,  // VL_NOT_IMPLEMENTED
  Runtime,         // VL_RUNTIME
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append(os, rest...);
}
}  // namespace detail

// Builds a message from its parts: vl::fail(ErrorCode::Shape, "expected ", a, ", got ", b).
template <typename... Parts>
[[noreturn]] void fail(ErrorCode code, const Parts&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  throw Error(code, os.str());
}

#define VL_CHECK(cond, code, ...)                 \
  do {                                            \
    if (!(cond)) ::vl::fail(code, __VA_ARGS__);   \
  } while (0)

}  // namespace vl
