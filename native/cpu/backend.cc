// The CPU backend: 64-byte aligned host memory behind a caching allocator
// (activations of one size recur every layer; reusing their blocks avoids a
// fresh mmap and its page faults per op), and one ordered stream per device
// whose thread runs the kernels (they fan out over the thread pool).
// VLLAMA_CPU_DEVICES=N makes N CPU devices ("cpu", "cpu:1", ...), each with
// its own stream and counters, so multi-device logic (transfers, device
// mismatch errors, cross-stream ordering) is testable without a GPU.
// VLLAMA_CPU_CACHE_MB bounds the cache per device (default 2048).
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "core/caching_allocator.h"
#include "core/error.h"

namespace vl {
namespace {

constexpr size_t kAlignment = 64;

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* env = std::getenv(name);
  if (!env || !*env) return fallback;
  const int v = std::atoi(env);
  return v >= lo && v <= hi ? v : fallback;
}

class CpuBackend final : public Backend {
 public:
  CpuBackend() {
    const int n = env_int("VLLAMA_CPU_DEVICES", 1, 1, 16);
    const size_t limit = static_cast<size_t>(env_int("VLLAMA_CPU_CACHE_MB", 2048, 0, 1 << 20)) << 20;
    for (int i = 0; i < n; ++i) devices_.push_back(std::make_unique<PerDevice>(Device{DeviceType::CPU, i}, limit));
  }

  DeviceType type() const override { return DeviceType::CPU; }
  int device_count() override { return static_cast<int>(devices_.size()); }
  std::string unavailable_reason() override { return ""; }
  StoragePtr allocate(Device device, size_t nbytes) override { return devices_.at(device.index)->allocator.allocate(nbytes, true); }
  Stream& stream(Device d) override { return devices_.at(d.index)->stream; }
  MemoryStats& stats(Device d) override { return devices_.at(d.index)->stats; }
  void copy_to_host(void* dst, const void* src, size_t n, Device) override { std::memcpy(dst, src, n); }
  void copy_from_host(void* dst, const void* src, size_t n, Device) override { std::memcpy(dst, src, n); }
  void release_cache(Device d) override { devices_.at(d.index)->allocator.release_cache(); }

 private:
  static void* raw_alloc(size_t n) {
    void* p = nullptr;
    return posix_memalign(&p, kAlignment, n) == 0 ? p : nullptr;
  }

  struct PerDevice {
    PerDevice(Device d, size_t cache_limit)
        : stream(d.str()), allocator(d, raw_alloc, [](void* p) { std::free(p); }, stats, cache_limit) {}
    Stream stream;
    MemoryStats stats;
    CachingAllocator allocator;
  };
  std::vector<std::unique_ptr<PerDevice>> devices_;
};

const bool registered = [] {
  register_backend(new CpuBackend());  // lives for the whole process
  return true;
}();

}  // namespace
}  // namespace vl
