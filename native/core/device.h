// Where a tensor's storage lives.
#pragma once
#include <string>

namespace vl {

enum class DeviceType : int { CPU = 0, CUDA = 1 };
constexpr int kNumDeviceTypes = 2;

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;
};

const char* device_type_name(DeviceType t);
// Accepts "cpu", "cuda" (device 0), "cuda:N" and "cpu:N"; throws a Device error otherwise.
// (Several CPU devices exist only with VLLAMA_CPU_DEVICES: they let multi-device
// code paths run on machines without GPUs.)
Device parse_device(const std::string& s);

}  // namespace vl
