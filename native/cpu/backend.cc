// The CPU backend: 64-byte aligned host memory and one ordered stream whose
// thread runs the kernels (they fan out over the thread pool).
// VLLAMA_CPU_DEVICES=N makes N CPU devices ("cpu", "cpu:1", ...), each with
// its own stream and counters, so multi-device logic (transfers, device
// mismatch errors, cross-stream ordering) is testable without a GPU.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "core/error.h"

namespace vl {
namespace {

constexpr size_t kAlignment = 64;

class CpuBackend final : public Backend {
 public:
  CpuBackend() {
    int n = 1;
    if (const char* env = std::getenv("VLLAMA_CPU_DEVICES")) {
      const int v = std::atoi(env);
      if (v >= 1 && v <= 16) n = v;
    }
    for (int i = 0; i < n; ++i) devices_.push_back(std::make_unique<PerDevice>(Device{DeviceType::CPU, i}.str()));
  }

  DeviceType type() const override { return DeviceType::CPU; }
  int device_count() override { return static_cast<int>(devices_.size()); }
  std::string unavailable_reason() override { return ""; }

  StoragePtr allocate(Device device, size_t nbytes) override {
    MemoryStats& stats_ = stats(device);
    void* p = nullptr;
    if (nbytes > 0) {
      const size_t rounded = (nbytes + kAlignment - 1) / kAlignment * kAlignment;
      if (posix_memalign(&p, kAlignment, rounded) != 0 || p == nullptr)
        fail(ErrorCode::OutOfMemory, "out of memory on ", device.str(), ": could not allocate ", nbytes, " bytes (",
             stats_.allocated_bytes.load(), " bytes in use)");
    }
    stats_.on_alloc(static_cast<int64_t>(nbytes));
    stats_.reserved_bytes.store(stats_.allocated_bytes.load());
    return std::make_shared<Storage>(device, p, nbytes, [&stats_](void* ptr, size_t n) {
      std::free(ptr);
      stats_.on_free(static_cast<int64_t>(n));
      stats_.reserved_bytes.store(stats_.allocated_bytes.load());
    });
  }

  Stream& stream(Device d) override { return devices_.at(d.index)->stream; }
  MemoryStats& stats(Device d) override { return devices_.at(d.index)->stats; }
  void copy_to_host(void* dst, const void* src, size_t n, Device) override { std::memcpy(dst, src, n); }
  void copy_from_host(void* dst, const void* src, size_t n, Device) override { std::memcpy(dst, src, n); }

 private:
  struct PerDevice {
    explicit PerDevice(const std::string& name) : stream(name) {}
    Stream stream;
    MemoryStats stats;
  };
  std::vector<std::unique_ptr<PerDevice>> devices_;
};

const bool registered = [] {
  register_backend(new CpuBackend());  // lives for the whole process
  return true;
}();

}  // namespace
}  // namespace vl
