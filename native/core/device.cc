#include "core/device.h"

#include <cstdlib>

#include "core/error.h"

namespace vl {

const char* device_type_name(DeviceType t) { return t == DeviceType::CPU ? "cpu" : "cuda"; }

std::string Device::str() const {
  if (type == DeviceType::CPU) return index == 0 ? "cpu" : "cpu:" + std::to_string(index);
  return std::string("cuda:") + std::to_string(index);
}

Device parse_device(const std::string& s) {
  for (DeviceType type : {DeviceType::CPU, DeviceType::CUDA}) {
    const std::string name = device_type_name(type);
    if (s == name) return Device{type, 0};
    if (s.size() > name.size() + 1 && s.size() <= name.size() + 4 && s.compare(0, name.size() + 1, name + ":") == 0) {
      const std::string digits = s.substr(name.size() + 1);
      bool ok = true;
      for (char c : digits) ok = ok && c >= '0' && c <= '9';
      if (ok) return Device{type, std::atoi(digits.c_str())};
    }
  }
  fail(ErrorCode::Device, "unknown device '", s, "': expected 'cpu', 'cuda' or 'cuda:N'");
}

}  // namespace vl
