// The kernel table: (op name, device type) -> kernel. An op's launcher checks
// its arguments, allocates outputs and calls launch(), which queues the
// kernel on the device's stream. A missing kernel or tensors on different
// devices are errors raised at launch time, on the caller's thread.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/tensor.h"

namespace vl {

// What a kernel sees of a tensor: plain data, trivially copyable (also to the GPU).
struct TensorArg {
  void* data;
  DType dtype;
  int ndim;
  int64_t numel;
  bool contiguous;
  int64_t shape[kMaxDims];
  int64_t strides[kMaxDims];
};
TensorArg make_arg(const TensorImpl& t);

// Scalar attributes of a kernel call (axis lists, seeds, fill values, ...).
class Attrs {
 public:
  Attrs& set(const std::string& name, double v);
  Attrs& set(const std::string& name, std::vector<int64_t> v);
  // A list of numbers (e.g. one factor per tensor of a multi-tensor op); a
  // name of its own, since a braced list of integers would fit both lists.
  Attrs& set_nums(const std::string& name, std::vector<double> v);
  double num(const std::string& name) const;
  int64_t integer(const std::string& name) const;
  const std::vector<int64_t>& ints(const std::string& name) const;
  const std::vector<double>& nums(const std::string& name) const;

 private:
  std::vector<std::pair<std::string, double>> nums_;
  std::vector<std::pair<std::string, std::vector<int64_t>>> lists_;
  std::vector<std::pair<std::string, std::vector<double>>> num_lists_;
};

struct KernelCall {
  Device device;
  std::vector<TensorArg> in;
  std::vector<TensorArg> out;
  const Attrs& attrs;
};
using KernelFn = void (*)(const KernelCall&);

void register_kernel(const char* op, DeviceType type, KernelFn fn);
KernelFn find_kernel(const std::string& op, DeviceType type);  // nullptr if none
std::vector<std::string> registered_ops(DeviceType type);

// Registers a kernel at load time: VL_REGISTER_KERNEL(add, CPU, add_cpu);
#define VL_REGISTER_KERNEL(op, dev, fn)                                                \
  static const bool vl_kernel_registered_##op##_##dev = [] {                          \
    ::vl::register_kernel(#op, ::vl::DeviceType::dev, fn);                            \
    return true;                                                                       \
  }()

// Allocates a contiguous tensor on `device`.
TensorPtr empty_tensor(const Shape& shape, DType dtype, Device device);

// Queues `op` on the device of its tensors. Inputs that carry an error from
// failed earlier work pass it on to the outputs without running the kernel.
void launch(const std::string& op, const std::vector<TensorPtr>& in, const std::vector<TensorPtr>& out,
            Attrs attrs = Attrs());

}  // namespace vl
