#include "core/device.h"

#include <cstdlib>

#include "core/error.h"

namespace vl {

const char* device_type_name(DeviceType t) { return t == DeviceType::CPU ? "cpu" : "cuda"; }

std::string Device::str() const {
  if (type == DeviceType::CPU) return "cpu";
  return std::string("cuda:") + std::to_string(index);
}

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device{DeviceType::CPU, 0};
  if (s == "cuda") return Device{DeviceType::CUDA, 0};
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5 && s.size() <= 8) {
    const std::string digits = s.substr(5);
    bool ok = true;
    for (char c : digits) ok = ok && c >= '0' && c <= '9';
    if (ok) return Device{DeviceType::CUDA, std::atoi(digits.c_str())};
  }
  fail(ErrorCode::Device, "unknown device '", s, "': expected 'cpu', 'cuda' or 'cuda:N'");
}

}  // namespace vl
