// Per-device memory counters, readable from JavaScript through memory().
#pragma once
#include <atomic>
#include <cstdint>

namespace vl {

struct MemoryStats {
  // Tensors held by JavaScript handles, and the bytes of the storages they keep alive.
  std::atomic<int64_t> live_tensors{0};
  std::atomic<int64_t> live_bytes{0};
  // What the allocator has handed out and not yet taken back (includes storages
  // still referenced by queued work after their last handle went away).
  std::atomic<int64_t> allocated_bytes{0};
  std::atomic<int64_t> peak_allocated_bytes{0};
  std::atomic<int64_t> allocations{0};  // total number of allocations made
  std::atomic<int64_t> reserved_bytes{0};  // held from the system (allocated + cached)
  std::atomic<int64_t> cached_bytes{0};    // freed blocks kept for reuse
  std::atomic<int64_t> gc_released{0};  // tensors released by the GC instead of dispose()

  void on_alloc(int64_t n) {
    const int64_t now = allocated_bytes.fetch_add(n) + n;
    allocations.fetch_add(1);
    int64_t peak = peak_allocated_bytes.load();
    while (now > peak && !peak_allocated_bytes.compare_exchange_weak(peak, now)) {
    }
  }
  void on_free(int64_t n) { allocated_bytes.fetch_sub(n); }
};

}  // namespace vl
