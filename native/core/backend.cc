#include "core/backend.h"

#include <chrono>

#include "core/error.h"

namespace vl {
namespace {
Backend* g_backends[kNumDeviceTypes] = {nullptr, nullptr};

class HostTimingMark final : public TimingMark {
 public:
  // Written by the stream task before any later task on that stream reads it.
  std::chrono::steady_clock::time_point at;
  double elapsed_ms_since(const TimingMark& start) const override {
    const auto& s = static_cast<const HostTimingMark&>(start);
    return std::chrono::duration<double, std::milli>(at - s.at).count();
  }
};
}  // namespace

TimingMarkPtr Backend::record_timing(Device device) {
  auto mark = std::make_shared<HostTimingMark>();
  stream(device).submit([mark] { mark->at = std::chrono::steady_clock::now(); });
  return mark;
}

void register_backend(Backend* backend) { g_backends[static_cast<int>(backend->type())] = backend; }

Backend* find_backend(DeviceType type) { return g_backends[static_cast<int>(type)]; }

Backend& backend_for(Device device) {
  Backend* b = find_backend(device.type);
  VL_CHECK(b != nullptr, ErrorCode::Device, "device ", device.str(),
           " is not available: this build of visionllama has no ", device_type_name(device.type),
           " backend (build it with `npm run build:cuda`)");
  const int count = b->device_count();
  if (count == 0) fail(ErrorCode::Device, "device ", device.str(), " is not available: ", b->unavailable_reason());
  VL_CHECK(device.index >= 0 && device.index < count, ErrorCode::Device, "device ", device.str(),
           " does not exist: ", count, " ", device_type_name(device.type), " device(s) present");
  return *b;
}

}  // namespace vl
