#include "core/dispatch.h"

#include <map>
#include <memory>

#include "core/backend.h"
#include "core/error.h"

namespace vl {

TensorArg make_arg(const TensorImpl& t) {
  TensorArg a{};
  a.data = t.data();
  a.dtype = t.dtype();
  a.ndim = t.ndim();
  a.numel = t.numel();
  a.contiguous = t.is_contiguous();
  for (int i = 0; i < t.ndim(); ++i) {
    a.shape[i] = t.shape()[i];
    a.strides[i] = t.strides()[i];
  }
  return a;
}

Attrs& Attrs::set(const std::string& name, double v) {
  nums_.emplace_back(name, v);
  return *this;
}
Attrs& Attrs::set(const std::string& name, std::vector<int64_t> v) {
  lists_.emplace_back(name, std::move(v));
  return *this;
}
Attrs& Attrs::set_nums(const std::string& name, std::vector<double> v) {
  num_lists_.emplace_back(name, std::move(v));
  return *this;
}
double Attrs::num(const std::string& name) const {
  for (const auto& kv : nums_)
    if (kv.first == name) return kv.second;
  fail(ErrorCode::Runtime, "kernel attribute '", name, "' is missing");
}
int64_t Attrs::integer(const std::string& name) const { return static_cast<int64_t>(num(name)); }
const std::vector<int64_t>& Attrs::ints(const std::string& name) const {
  for (const auto& kv : lists_)
    if (kv.first == name) return kv.second;
  fail(ErrorCode::Runtime, "kernel attribute '", name, "' is missing");
}
const std::vector<double>& Attrs::nums(const std::string& name) const {
  for (const auto& kv : num_lists_)
    if (kv.first == name) return kv.second;
  fail(ErrorCode::Runtime, "kernel attribute '", name, "' is missing");
}

namespace {
std::map<std::string, KernelFn[kNumDeviceTypes]>& table() {
  static auto* t = new std::map<std::string, KernelFn[kNumDeviceTypes]>();
  return *t;
}
}  // namespace

void register_kernel(const char* op, DeviceType type, KernelFn fn) {
  auto& entry = table()[op];
  entry[static_cast<int>(type)] = fn;
}

KernelFn find_kernel(const std::string& op, DeviceType type) {
  auto it = table().find(op);
  return it == table().end() ? nullptr : it->second[static_cast<int>(type)];
}

std::vector<std::string> registered_ops(DeviceType type) {
  std::vector<std::string> out;
  for (const auto& kv : table())
    if (kv.second[static_cast<int>(type)]) out.push_back(kv.first);
  return out;
}

TensorPtr empty_tensor(const Shape& shape, DType dtype, Device device) {
  check_shape(shape, "allocate");
  Backend& b = backend_for(device);
  const size_t nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  return std::make_shared<TensorImpl>(b.allocate(device, nbytes), dtype, shape, contiguous_strides(shape), 0);
}

void launch(const std::string& op, const std::vector<TensorPtr>& in, const std::vector<TensorPtr>& out,
            Attrs attrs) {
  VL_CHECK(!out.empty(), ErrorCode::Runtime, op, ": launched without outputs");
  const Device device = out[0]->device();
  for (const auto& t : in)
    VL_CHECK(t->device() == device, ErrorCode::Device, op, ": expected every tensor on ", device.str(),
             ", got ", t->describe(), "; move it explicitly with .to('", device.str(), "')");
  for (const auto& t : out)
    VL_CHECK(t->device() == device, ErrorCode::Device, op, ": outputs on different devices");
  const KernelFn fn = find_kernel(op, device.type);
  VL_CHECK(fn != nullptr, ErrorCode::NotImplemented, op, ": no kernel for ", device_type_name(device.type),
           " in this build");
  Backend& b = backend_for(device);
  b.stream(device).submit([op, fn, device, in, out, attrs = std::move(attrs)] {
    std::string error;
    for (const auto& t : in) {
      error = t->storage()->error();
      if (!error.empty()) break;
    }
    if (error.empty()) {
      try {
        KernelCall call{device, {}, {}, attrs};
        for (const auto& t : in) call.in.push_back(make_arg(*t));
        for (const auto& t : out) call.out.push_back(make_arg(*t));
        fn(call);
      } catch (const std::exception& e) {
        error = op + " failed on " + device.str() + ": " + e.what();
      }
    }
    if (!error.empty())
      for (const auto& t : out) t->storage()->set_error(error);
  });
}

}  // namespace vl
