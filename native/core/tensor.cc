#include "core/tensor.h"

#include <limits>
#include <sstream>

#include "core/error.h"

namespace vl {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const Shape& shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? "," : "") << shape[i];
  os << ']';
  return os.str();
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) {
    strides[i] = s;
    s *= shape[i] > 0 ? shape[i] : 1;
  }
  return strides;
}

void check_shape(const Shape& shape, const char* what) {
  VL_CHECK(static_cast<int>(shape.size()) <= kMaxDims, ErrorCode::Shape, what, ": at most ", kMaxDims,
           " dimensions are supported, got ", shape.size(), " (", shape_str(shape), ")");
  int64_t n = 1;
  for (int64_t d : shape) {
    VL_CHECK(d >= 0, ErrorCode::Shape, what, ": dimensions must be non-negative integers, got ", shape_str(shape));
    VL_CHECK(d == 0 || n <= std::numeric_limits<int64_t>::max() / 16 / d, ErrorCode::Shape, what,
             ": shape ", shape_str(shape), " has too many elements");
    n *= d;
  }
}

TensorImpl::TensorImpl(StoragePtr storage, DType dtype, Shape shape, Shape strides, int64_t offset)
    : storage_(std::move(storage)),
      dtype_(dtype),
      shape_(std::move(shape)),
      strides_(std::move(strides)),
      offset_(offset),
      numel_(shape_numel(shape_)) {}

bool TensorImpl::is_contiguous() const {
  int64_t expected = 1;
  for (int i = ndim() - 1; i >= 0; --i) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

void* TensorImpl::data() const {
  return static_cast<char*>(storage_->data()) + offset_ * static_cast<int64_t>(dtype_size(dtype_));
}

std::string TensorImpl::describe() const {
  return std::string(dtype_name(dtype_)) + shape_str(shape_) + " on " + device().str();
}

Shape infer_shape(const Shape& shape, int64_t numel) {
  Shape out = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      VL_CHECK(infer < 0, ErrorCode::Shape, "reshape: only one dimension can be -1, got ", shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      VL_CHECK(out[i] >= 0, ErrorCode::Shape, "reshape: dimensions must be non-negative or -1, got ",
               shape_str(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    VL_CHECK(known != 0 && numel % known == 0, ErrorCode::Shape, "reshape: cannot infer -1 in ",
             shape_str(shape), " for ", numel, " elements");
    out[infer] = numel / known;
  }
  check_shape(out, "reshape");
  VL_CHECK(shape_numel(out) == numel, ErrorCode::Shape, "reshape: shape ", shape_str(out), " has ",
           shape_numel(out), " elements but the tensor has ", numel);
  return out;
}

bool reshape_strides(const TensorImpl& t, const Shape& shape, Shape* strides) {
  if (t.is_contiguous()) {
    *strides = contiguous_strides(shape);
    return true;
  }
  // Walk both shapes, merging runs of old dims that are contiguous with each
  // other; each run must be split exactly by new dims (as in numpy/torch).
  const Shape& os = t.shape();
  const Shape& ost = t.strides();
  Shape out(shape.size());
  int oi = 0, ni = 0;
  const int on = static_cast<int>(os.size()), nn = static_cast<int>(shape.size());
  while (oi < on || ni < nn) {
    while (oi < on && os[oi] == 1) ++oi;
    while (ni < nn && shape[ni] == 1) out[ni++] = 1;  // stride irrelevant
    if (oi >= on || ni >= nn) break;
    // Size-1 dims have meaningless strides: the run continues from the last
    // dim of size > 1 (`last`) to the next one when their strides chain.
    int64_t run = os[oi];
    int oe = oi, last = oi;
    while (oe + 1 < on) {
      const int nx = oe + 1;
      if (os[nx] == 1) {
        oe = nx;
      } else if (ost[last] == ost[nx] * os[nx]) {
        run *= os[nx];
        last = oe = nx;
      } else {
        break;
      }
    }
    int64_t stride = ost[last];
    int64_t acc = 1;
    int ne = ni;
    while (ne < nn && acc < run) acc *= shape[ne++];
    if (acc != run) return false;
    for (int k = ne - 1; k >= ni; --k) {
      out[k] = stride;
      stride *= shape[k];
    }
    ni = ne;
    oi = oe + 1;
  }
  while (ni < nn) out[ni++] = 1;
  *strides = out;
  return true;
}

TensorPtr view_reshape(const TensorPtr& t, Shape shape) {
  shape = infer_shape(shape, t->numel());
  Shape strides;
  VL_CHECK(reshape_strides(*t, shape, &strides), ErrorCode::Shape, "reshape: a ", t->describe(),
           " with strides ", shape_str(t->strides()), " cannot be viewed as ", shape_str(shape),
           "; call contiguous() first");
  return std::make_shared<TensorImpl>(t->storage(), t->dtype(), shape, strides, t->offset());
}

TensorPtr view_permute(const TensorPtr& t, const std::vector<int64_t>& dims) {
  const int n = t->ndim();
  VL_CHECK(static_cast<int>(dims.size()) == n, ErrorCode::Shape, "permute: expected ", n,
           " dimensions for ", t->describe(), ", got ", dims.size());
  std::vector<bool> seen(n, false);
  Shape shape(n), strides(n);
  for (int i = 0; i < n; ++i) {
    int64_t d = dims[i] < 0 ? dims[i] + n : dims[i];
    VL_CHECK(d >= 0 && d < n && !seen[d], ErrorCode::Shape, "permute: ", shape_str(dims),
             " is not a permutation of 0..", n - 1);
    seen[d] = true;
    shape[i] = t->shape()[d];
    strides[i] = t->strides()[d];
  }
  return std::make_shared<TensorImpl>(t->storage(), t->dtype(), shape, strides, t->offset());
}

TensorPtr view_as_strided(const TensorPtr& t, Shape shape, Shape strides, int64_t offset) {
  check_shape(shape, "asStrided");
  VL_CHECK(strides.size() == shape.size(), ErrorCode::Shape, "asStrided: ", shape.size(),
           " dimensions but ", strides.size(), " strides");
  VL_CHECK(offset >= 0, ErrorCode::Shape, "asStrided: offset must be >= 0, got ", offset);
  // Every reachable element must lie inside the storage: views never read out of bounds.
  int64_t lo = offset, hi = offset;
  bool empty = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0) empty = true;
    const int64_t span = (shape[i] - 1) * strides[i];
    if (span < 0) lo += span; else hi += span;
  }
  const int64_t capacity = static_cast<int64_t>(t->storage()->nbytes() / dtype_size(t->dtype()));
  VL_CHECK(empty || (lo >= 0 && hi < capacity), ErrorCode::Shape, "asStrided: view ", shape_str(shape),
           " with strides ", shape_str(strides), " at offset ", offset, " reaches outside the storage of ",
           capacity, " elements");
  return std::make_shared<TensorImpl>(t->storage(), t->dtype(), shape, strides, offset);
}

}  // namespace vl
