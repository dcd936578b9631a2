// Argument checks for binding functions: each throws a typed error naming
// the function, the argument and what was expected.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace vl {
namespace binding {

struct Args {
  const Napi::CallbackInfo& info;
  const char* fn;

  Napi::Value at(size_t i) const;
  double number(size_t i, const char* name) const;
  int64_t integer(size_t i, const char* name) const;
  bool boolean(size_t i, const char* name) const;
  std::string string(size_t i, const char* name) const;
  Shape shape(size_t i, const char* name) const;  // array of non-negative integers
  std::vector<int64_t> ints(size_t i, const char* name) const;  // array of integers (may be negative)
  DType dtype(size_t i) const;
  Device device(size_t i) const;
  TensorPtr tensor(size_t i) const;
  TensorPtr optional_tensor(size_t i) const;  // null / undefined -> no tensor
  std::vector<TensorPtr> tensors(size_t i, const char* name) const;  // array of tensors
  std::vector<double> numbers(size_t i, const char* name) const;     // array of numbers
  std::vector<bool> booleans(size_t i, const char* name) const;      // array of booleans
};

}  // namespace binding
}  // namespace vl
