// The CPU backend: 64-byte aligned host memory and one ordered stream whose
// thread runs the kernels (they fan out over the thread pool).
#include <cstdlib>
#include <cstring>

#include "core/backend.h"
#include "core/error.h"

namespace vl {
namespace {

constexpr size_t kAlignment = 64;

class CpuBackend final : public Backend {
 public:
  DeviceType type() const override { return DeviceType::CPU; }
  int device_count() override { return 1; }
  std::string unavailable_reason() override { return ""; }

  StoragePtr allocate(Device device, size_t nbytes) override {
    void* p = nullptr;
    if (nbytes > 0) {
      const size_t rounded = (nbytes + kAlignment - 1) / kAlignment * kAlignment;
      if (posix_memalign(&p, kAlignment, rounded) != 0 || p == nullptr)
        fail(ErrorCode::OutOfMemory, "out of memory on cpu: could not allocate ", nbytes, " bytes (",
             stats_.allocated_bytes.load(), " bytes in use)");
    }
    stats_.on_alloc(static_cast<int64_t>(nbytes));
    stats_.reserved_bytes.store(stats_.allocated_bytes.load());
    return std::make_shared<Storage>(device, p, nbytes, [this](void* ptr, size_t n) {
      std::free(ptr);
      stats_.on_free(static_cast<int64_t>(n));
      stats_.reserved_bytes.store(stats_.allocated_bytes.load());
    });
  }

  Stream& stream(Device) override { return stream_; }
  MemoryStats& stats(Device) override { return stats_; }
  void copy_to_host(void* dst, const void* src, size_t n, Device) override { std::memcpy(dst, src, n); }
  void copy_from_host(void* dst, const void* src, size_t n, Device) override { std::memcpy(dst, src, n); }

 private:
  Stream stream_{"cpu"};
  MemoryStats stats_;
};

const bool registered = [] {
  register_backend(new CpuBackend());  // lives for the whole process
  return true;
}();

}  // namespace
}  // namespace vl
