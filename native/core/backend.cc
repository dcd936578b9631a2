#include "core/backend.h"

#include "core/error.h"

namespace vl {
namespace {
Backend* g_backends[kNumDeviceTypes] = {nullptr, nullptr};
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
