#include <cstring>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "ops/ops.h"

namespace vl {
namespace ops {

TensorPtr copy(const TensorPtr& t, DType dtype) {
  TensorPtr out = empty_tensor(t->shape(), dtype, t->device());
  if (out->numel() > 0) launch("copy", {t}, {out});
  return out;
}

TensorPtr contiguous(const TensorPtr& t) { return t->is_contiguous() ? t : copy(t, t->dtype()); }

TensorPtr concat(const std::vector<TensorPtr>& parts, int64_t dim) {
  VL_CHECK(!parts.empty(), ErrorCode::Argument, "concat: expected at least one tensor");
  const TensorPtr& first = parts[0];
  const int n = first->ndim();
  const int64_t d = dim < 0 ? dim + n : dim;
  VL_CHECK(d >= 0 && d < n, ErrorCode::Shape, "concat: dimension ", dim, " is out of range for ", first->describe());
  Shape shape = first->shape();
  shape[d] = 0;
  for (const auto& p : parts) {
    VL_CHECK(p->dtype() == first->dtype(), ErrorCode::DType, "concat: dtypes differ (", first->describe(), " and ",
             p->describe(), ")");
    VL_CHECK(p->device() == first->device(), ErrorCode::Device, "concat: tensors are on different devices (",
             first->describe(), " and ", p->describe(), ")");
    bool same = p->ndim() == n;
    for (int i = 0; same && i < n; ++i) same = i == d || p->shape()[i] == first->shape()[i];
    VL_CHECK(same, ErrorCode::Shape, "concat: ", p->describe(), " does not match ", first->describe(),
             " outside dimension ", d);
    shape[d] += p->shape()[d];
  }
  TensorPtr out = empty_tensor(shape, first->dtype(), first->device());
  int64_t at = 0;
  for (const auto& p : parts) {
    if (p->numel() > 0) {
      TensorPtr slot = std::make_shared<TensorImpl>(out->storage(), out->dtype(), p->shape(), out->strides(),
                                                    at * out->strides()[d]);
      launch("copy_into", {p}, {slot});
    }
    at += p->shape()[d];
  }
  return out;
}

void assign(const TensorPtr& dst, const TensorPtr& src) {
  VL_CHECK(dst->shape() == src->shape(), ErrorCode::Shape, "assign: ", src->describe(), " does not have the shape of ",
           dst->describe());
  VL_CHECK(dst->dtype() == src->dtype(), ErrorCode::DType, "assign: ", src->describe(), " has another dtype than ",
           dst->describe(), "; convert it first with .to('", dtype_name(dst->dtype()), "')");
  VL_CHECK(dst->device() == src->device(), ErrorCode::Device, "assign: ", src->describe(), " is on another device than ",
           dst->describe(), "; move it first with .to('", dst->device().str(), "')");
  if (dst->numel() > 0 && !(dst->storage() == src->storage() && dst->offset() == src->offset() && dst->strides() == src->strides()))
    launch("copy_into", {src}, {dst});
}

namespace {
const Device kCpu{DeviceType::CPU, 0};

std::string first_error(const TensorPtr& t, const EventPtr& ev) {
  std::string e = ev ? ev->error() : "";
  return e.empty() ? t->storage()->error() : e;
}
}  // namespace

TensorPtr to_device(const TensorPtr& t, Device device) {
  if (t->device() == device) return t;
  Backend& dst_backend = backend_for(device);
  TensorPtr src = contiguous(t);
  TensorPtr out = empty_tensor(src->shape(), src->dtype(), device);
  const size_t nbytes = src->nbytes();
  Backend& src_backend = backend_for(src->device());
  // The copy runs on the stream of the non-CPU side; the other stream is
  // ordered around it with events, so later work on either side sees the data.
  EventPtr ready = src_backend.stream(src->device()).record();
  if (src->device().type == DeviceType::CPU) {
    dst_backend.stream(device).submit([src, out, ready, nbytes, device, &dst_backend] {
      ready->wait();
      const std::string err = first_error(src, nullptr);
      if (!err.empty()) return out->storage()->set_error(err);
      try {
        dst_backend.copy_from_host(out->data(), src->data(), nbytes, device);
      } catch (const std::exception& e) {
        out->storage()->set_error(std::string("copy to ") + device.str() + " failed: " + e.what());
      }
    });
  } else if (device.type == DeviceType::CPU) {
    auto done = std::make_shared<Event>();
    const Device sdev = src->device();
    src_backend.stream(sdev).submit([src, out, nbytes, sdev, done, &src_backend] {
      std::string err = first_error(src, nullptr);
      if (err.empty()) {
        try {
          src_backend.copy_to_host(out->data(), src->data(), nbytes, sdev);
        } catch (const std::exception& e) {
          err = std::string("copy from ") + sdev.str() + " failed: " + e.what();
        }
      }
      if (!err.empty()) out->storage()->set_error(err);
      done->signal();
    });
    dst_backend.stream(device).wait_event(done);
  } else {
    // Device to device goes through the host (peer copies can come later).
    return to_device(to_device(src, kCpu), device);
  }
  return out;
}

void read(const TensorPtr& t, DType dtype, void* dst, std::function<void(const std::string&)> done) {
  const Device dev = t->device();
  if (dev.type == DeviceType::CPU) {
    // The CPU copy kernel gathers and converts straight into the caller's buffer.
    TensorPtr target = std::make_shared<TensorImpl>(
        std::make_shared<Storage>(dev, dst, t->numel() * dtype_size(dtype), nullptr), dtype, t->shape(),
        contiguous_strides(t->shape()), 0);
    if (t->numel() > 0) launch("copy", {t}, {target});
    backend_for(dev).stream(dev).submit([t, target, done] {
      const std::string err = t->storage()->error();
      done(err.empty() ? target->storage()->error() : err);
    });
    return;
  }
  TensorPtr host = to_device(t, kCpu);
  read(host, dtype, dst, std::move(done));
}

void synchronize(Device device) { backend_for(device).stream(device).synchronize(); }

}  // namespace ops
}  // namespace vl
