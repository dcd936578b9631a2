// A caching allocator over a raw device allocator (e.g. cudaMalloc/cudaFree).
// Raw allocations are slow and often synchronize the device, so freed blocks
// are kept in a cache and handed out again for requests of a similar size.
// Reuse is safe only when all work on the device is ordered on one stream, so
// a block freed after queued work is only touched by work queued later.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "core/device.h"
#include "core/memory_stats.h"
#include "core/storage.h"

namespace vl {

class CachingAllocator {
 public:
  // Returns nullptr when out of memory; may throw vl::Error for other failures.
  using RawAlloc = std::function<void*(size_t)>;
  // Must not throw.
  using RawFree = std::function<void(void*)>;

  static constexpr size_t kSmallRound = 512;
  static constexpr size_t kSmallLimit = size_t(1) << 20;  // requests up to this are "small"
  static constexpr size_t kLargeRound = size_t(2) << 20;

  // Blocks returned while the cache already holds `cache_limit` bytes go
  // straight back to the raw allocator (bounds what host memory is held).
  CachingAllocator(Device device, RawAlloc raw_alloc, RawFree raw_free, MemoryStats& stats,
                   size_t cache_limit = SIZE_MAX);
  // Frees the cache; blocks still held by storages are raw-freed when those go away.
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // A storage of `nbytes` whose deleter returns its block to the cache. Throws
  // an OutOfMemory vl::Error naming the device and sizes when it cannot allocate
  // (a deferred storage takes its block, and throws, on first data()).
  StoragePtr allocate(size_t nbytes, bool deferred = false);
  // Raw-frees every cached block.
  void release_cache();

  // Block size for a request.
  static size_t round_size(size_t nbytes);
  // Largest cached block a request of block size `rounded` may take.
  static size_t max_reuse_size(size_t rounded);

  size_t cached_bytes() const;
  size_t cached_blocks() const;
  size_t reserved_bytes() const;  // allocated blocks + cache

 private:
  struct State;
  std::shared_ptr<State> state_;  // shared with live storages' deleters
};

}  // namespace vl
