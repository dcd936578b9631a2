// Tensor metadata: a storage plus dtype, shape, strides (in elements) and an offset.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/storage.h"

namespace vl {

constexpr int kMaxDims = 8;
using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);
Shape contiguous_strides(const Shape& shape);
// Throws a Shape error for negative dims, too many dims or a size that overflows.
void check_shape(const Shape& shape, const char* what);

class TensorImpl {
 public:
  TensorImpl(StoragePtr storage, DType dtype, Shape shape, Shape strides, int64_t offset);

  const StoragePtr& storage() const { return storage_; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_->device(); }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t offset() const { return offset_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  bool is_contiguous() const;
  // Pointer to element [0, 0, ...] (storage base + offset).
  void* data() const;
  std::string describe() const;  // e.g. "f32[2,3] on cpu"

 private:
  StoragePtr storage_;
  DType dtype_;
  Shape shape_;
  Shape strides_;
  int64_t offset_;
  int64_t numel_;
};

using TensorPtr = std::shared_ptr<TensorImpl>;

// Views (share storage). Each validates its arguments and throws Shape errors.
TensorPtr view_reshape(const TensorPtr& t, Shape shape);  // needs a compatible layout
TensorPtr view_permute(const TensorPtr& t, const std::vector<int64_t>& dims);
TensorPtr view_as_strided(const TensorPtr& t, Shape shape, Shape strides, int64_t offset);
// Resolves a single -1 in `shape` against numel.
Shape infer_shape(const Shape& shape, int64_t numel);
// Whether reshape can be a view; fills the strides if so.
bool reshape_strides(const TensorImpl& t, const Shape& shape, Shape* strides);

}  // namespace vl
