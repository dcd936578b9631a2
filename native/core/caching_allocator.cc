#include "core/caching_allocator.h"

#include <algorithm>
#include <utility>

#include "core/error.h"

namespace vl {

struct CachingAllocator::State {
  Device device;
  RawAlloc raw_alloc;
  RawFree raw_free;
  MemoryStats& stats;
  mutable std::mutex mutex;
  std::multimap<size_t, void*> cache;  // block size -> block
  size_t cached = 0;
  size_t reserved = 0;  // every block held from the raw allocator
  bool alive = true;    // false once the allocator is destroyed: returns go straight to raw_free
  size_t cache_limit;

  State(Device d, RawAlloc a, RawFree f, MemoryStats& s, size_t limit)
      : device(d), raw_alloc(std::move(a)), raw_free(std::move(f)), stats(s), cache_limit(limit) {}

  void publish() {
    stats.reserved_bytes.store(static_cast<int64_t>(reserved));
    stats.cached_bytes.store(static_cast<int64_t>(cached));
  }

  // Caller holds the mutex.
  void free_cache() {
    for (auto& kv : cache) raw_free(kv.second);
    reserved -= cached;
    cached = 0;
    cache.clear();
    publish();
  }

  void give_back(void* p, size_t block) {
    std::lock_guard<std::mutex> lock(mutex);
    if (alive && cached + block <= cache_limit) {
      cache.emplace(block, p);
      cached += block;
    } else {
      raw_free(p);
      reserved -= block;
    }
    publish();
  }

  // Takes a block of round_size(nbytes) bytes from the cache or the raw allocator.
  std::pair<void*, size_t> take_block(size_t nbytes) {
    const size_t rounded = CachingAllocator::round_size(nbytes);
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache.lower_bound(rounded);  // smallest cached block that fits
    if (it != cache.end() && it->first <= CachingAllocator::max_reuse_size(rounded)) {
      const std::pair<void*, size_t> taken{it->second, it->first};
      cache.erase(it);
      cached -= taken.second;
      publish();
      return taken;
    }
    void* p = raw_alloc(rounded);
    const size_t cached_before = cached;
    if (p == nullptr && !cache.empty()) {
      // Cached blocks of other sizes may be what stands in the way.
      free_cache();
      p = raw_alloc(rounded);
    }
    if (p == nullptr)
      fail(ErrorCode::OutOfMemory, "out of memory on ", device.str(), ": could not allocate ", nbytes, " bytes (a ",
           rounded, "-byte block); ", stats.allocated_bytes.load(), " bytes allocated, ", cached_before,
           " bytes cached", cached_before ? " (released before retrying)" : "", ", ", reserved, " bytes reserved");
    reserved += rounded;
    publish();
    return {p, rounded};
  }
};

CachingAllocator::CachingAllocator(Device device, RawAlloc raw_alloc, RawFree raw_free, MemoryStats& stats,
                                   size_t cache_limit)
    : state_(std::make_shared<State>(device, std::move(raw_alloc), std::move(raw_free), stats, cache_limit)) {}

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->free_cache();
  state_->alive = false;
}

size_t CachingAllocator::round_size(size_t nbytes) {
  if (nbytes <= kSmallLimit) return std::max<size_t>(1, (nbytes + kSmallRound - 1) / kSmallRound) * kSmallRound;
  return (nbytes + kLargeRound - 1) / kLargeRound * kLargeRound;
}

size_t CachingAllocator::max_reuse_size(size_t rounded) { return rounded + std::max(rounded / 8, kLargeRound); }

StoragePtr CachingAllocator::allocate(size_t nbytes, bool deferred) {
  State& s = *state_;
  if (nbytes == 0) {
    // No block: counted as an allocation so the counters match the CPU backend.
    s.stats.on_alloc(0);
    return std::make_shared<Storage>(s.device, nullptr, 0, [st = state_](void*, size_t) { st->stats.on_free(0); });
  }
  if (deferred) {
    // The counters see the bytes now; the block is taken when first touched.
    s.stats.on_alloc(static_cast<int64_t>(nbytes));
    auto block = std::make_shared<size_t>(0);
    return std::make_shared<Storage>(
        s.device, nbytes,
        [st = state_, block](size_t n) {
          auto taken = st->take_block(n);
          *block = taken.second;
          return taken.first;
        },
        [st = state_, block](void* ptr, size_t n) {
          st->stats.on_free(static_cast<int64_t>(n));
          if (ptr) st->give_back(ptr, *block);
        });
  }
  const auto taken = s.take_block(nbytes);
  s.stats.on_alloc(static_cast<int64_t>(nbytes));
  return std::make_shared<Storage>(s.device, taken.first, nbytes, [st = state_, block = taken.second](void* ptr, size_t n) {
    st->stats.on_free(static_cast<int64_t>(n));
    st->give_back(ptr, block);
  });
}

void CachingAllocator::release_cache() {
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->free_cache();
}

size_t CachingAllocator::cached_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->cached;
}

size_t CachingAllocator::cached_blocks() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->cache.size();
}

size_t CachingAllocator::reserved_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->reserved;
}

}  // namespace vl
