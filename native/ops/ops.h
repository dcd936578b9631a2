// Op launchers: argument checks, output allocation and dispatch. They run on
// the caller's thread and return at once; the kernels run on the device stream.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dispatch.h"
#include "core/tensor.h"

namespace vl {
namespace ops {

// creation.cc
TensorPtr full(const Shape& shape, DType dtype, Device device, double value);
TensorPtr arange(double start, double step, int64_t n, DType dtype, Device device);
// Normal(mean=a, std=b) or Uniform[a, b). (seed, stream) select the Philox sequence.
TensorPtr random(const Shape& shape, DType dtype, Device device, bool normal, double a, double b, uint64_t seed,
                 uint64_t stream);

// What a JavaScript typed array holds.
enum class HostKind { F32, F64, I32, I64, U8, U16Bits };
// Copies `count` host elements now (the caller's buffer may change right after).
TensorPtr from_host(const void* src, HostKind kind, int64_t count, const Shape& shape, DType dtype, Device device);

// copy.cc
// A contiguous copy converted to `dtype` on the same device.
TensorPtr copy(const TensorPtr& t, DType dtype);
// `t` itself when already contiguous, else a contiguous copy.
TensorPtr contiguous(const TensorPtr& t);
// Writes src's values into dst's memory (any strides), in stream order: same shape, dtype and device.
void assign(const TensorPtr& dst, const TensorPtr& src);
// Joins tensors along `dim` (same dtype and device; other dims equal).
TensorPtr concat(const std::vector<TensorPtr>& parts, int64_t dim);
// An explicit transfer to another device (the only way data changes device).
TensorPtr to_device(const TensorPtr& t, Device device);
// Reads `t` into host memory `dst` (contiguous, converted to `dtype`), then
// calls done("") or done(error) on a stream thread.
void read(const TensorPtr& t, DType dtype, void* dst, std::function<void(const std::string&)> done);
// Blocks until all work queued on `device` so far has run.
void synchronize(Device device);

// elementwise.cc: "add" | "sub" | "mul" | "div", numpy broadcasting, same dtype.
TensorPtr binary(const std::string& op, const TensorPtr& a, const TensorPtr& b);
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// reduce.cc: sum over `dims` (all when empty). Floats keep their dtype, ints give i64.
TensorPtr sum(const TensorPtr& t, const std::vector<int64_t>& dims, bool keepdim);

}  // namespace ops
}  // namespace vl
