// Standalone test of core/caching_allocator over a fake, size-limited raw
// allocator backed by malloc. Build and run from the repository root:
//   g++ -std=c++17 -O1 -Inative native/tests/caching_allocator_test.cc native/core/caching_allocator.cc
//       native/core/error.cc native/core/device.cc -lpthread -o /tmp/cat && /tmp/cat
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/caching_allocator.h"
#include "core/error.h"

using vl::CachingAllocator;
using vl::StoragePtr;

namespace {

constexpr size_t KiB = 1024, MiB = 1024 * 1024;

int g_passed = 0, g_failed = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
  (ok ? g_passed : g_failed)++;
}

template <typename A, typename B>
void check_eq(const A& got, const B& want, const std::string& what) {
  const bool ok = static_cast<long long>(got) == static_cast<long long>(want);
  check(ok, what + (ok ? "" : " (got " + std::to_string(static_cast<long long>(got)) + ", want " +
                                  std::to_string(static_cast<long long>(want)) + ")"));
}

// malloc with a byte limit, counting calls.
struct FakeDevice {
  size_t limit;
  size_t in_use = 0;
  int allocs = 0, frees = 0, failures = 0;
  std::map<void*, size_t> blocks;
  std::mutex mutex;

  explicit FakeDevice(size_t l) : limit(l) {}
  void* alloc(size_t n) {
    std::lock_guard<std::mutex> lock(mutex);
    if (in_use + n > limit) {
      ++failures;
      return nullptr;
    }
    void* p = std::malloc(n);
    if (!p) return nullptr;
    in_use += n;
    blocks[p] = n;
    ++allocs;
    return p;
  }
  void free(void* p) {
    std::lock_guard<std::mutex> lock(mutex);
    in_use -= blocks.at(p);
    blocks.erase(p);
    ++frees;
    std::free(p);
  }
};

}  // namespace

int main() {
  const vl::Device cuda0{vl::DeviceType::CUDA, 0};

  // Rounding and reuse bounds.
  check_eq(CachingAllocator::round_size(1), 512, "round_size(1) = 512");
  check_eq(CachingAllocator::round_size(512), 512, "round_size(512) = 512");
  check_eq(CachingAllocator::round_size(513), 1024, "round_size(513) = 1024");
  check_eq(CachingAllocator::round_size(1 * MiB), 1 * MiB, "round_size(1 MiB) = 1 MiB (small bucket)");
  check_eq(CachingAllocator::round_size(1 * MiB + 1), 2 * MiB, "round_size(1 MiB + 1) = 2 MiB");
  check_eq(CachingAllocator::round_size(3 * MiB), 4 * MiB, "round_size(3 MiB) = 4 MiB");
  check_eq(CachingAllocator::max_reuse_size(512), 512 + 2 * MiB, "max_reuse_size(512) = 512 + 2 MiB");
  check_eq(CachingAllocator::max_reuse_size(64 * MiB), 72 * MiB, "max_reuse_size(64 MiB) = 72 MiB");

  FakeDevice dev(32 * MiB);
  vl::MemoryStats stats;
  {
    CachingAllocator a(
        cuda0, [&](size_t n) { return dev.alloc(n); }, [&](void* p) { dev.free(p); }, stats);

    // A fresh allocation comes from the raw allocator, rounded.
    StoragePtr s1 = a.allocate(1000);
    void* p1 = s1->data();
    check(p1 != nullptr, "allocate(1000) returns memory");
    check_eq(s1->nbytes(), 1000, "storage reports the requested size");
    check_eq(dev.allocs, 1, "one raw allocation");
    check_eq(dev.in_use, 1024, "raw block is 1024 bytes");
    check_eq(stats.allocated_bytes.load(), 1000, "allocated_bytes = 1000");
    check_eq(stats.reserved_bytes.load(), 1024, "reserved_bytes = 1024");

    // Freeing caches the block; a same-bucket request gets it back.
    s1.reset();
    check_eq(stats.allocated_bytes.load(), 0, "allocated_bytes = 0 after free");
    check_eq(stats.reserved_bytes.load(), 1024, "reserved_bytes still 1024 (cached)");
    check_eq(a.cached_bytes(), 1024, "1024 bytes cached");
    check_eq(dev.frees, 0, "no raw free on release");
    StoragePtr s2 = a.allocate(600);
    check(s2->data() == p1, "same-bucket request reuses the cached block (same pointer)");
    check_eq(dev.allocs, 1, "no new raw allocation on reuse");
    check_eq(a.cached_bytes(), 0, "cache empty after reuse");
    check_eq(stats.allocated_bytes.load(), 600, "allocated_bytes = 600");
    check_eq(stats.reserved_bytes.load(), 1024, "reserved_bytes = 1024");
    s2.reset();

    // A much larger cached block is not handed out for a small request.
    StoragePtr big = a.allocate(16 * MiB);
    void* pbig = big->data();
    big.reset();
    check_eq(a.cached_bytes(), 16 * MiB + 1024, "16 MiB + 1 KiB cached");
    StoragePtr s3 = a.allocate(4 * MiB);
    check(s3->data() != pbig, "4 MiB request does not take the 16 MiB block");
    check_eq(dev.allocs, 3, "it made a new raw allocation");
    check_eq(stats.reserved_bytes.load(), 16 * MiB + 1024 + 4 * MiB, "reserved = 16 MiB + 1 KiB + 4 MiB");
    // ...but a block within [rounded, rounded + max(rounded/8, 2 MiB)] is.
    StoragePtr s4 = a.allocate(14 * MiB + 1);  // rounds to 16 MiB
    check(s4->data() == pbig, "16 MiB request (14 MiB + 1) reuses the 16 MiB block");
    check_eq(dev.allocs, 3, "no new raw allocation");
    check_eq(stats.allocated_bytes.load(), 4 * MiB + 14 * MiB + 1, "allocated = 4 MiB + 14 MiB + 1");
    s3.reset();
    s4.reset();

    // Best fit: of 4 MiB and 16 MiB cached blocks, a 4 MiB request takes the 4 MiB one.
    StoragePtr s5 = a.allocate(3 * MiB);
    check_eq(s5->nbytes(), 3 * MiB, "3 MiB request");
    check_eq(a.cached_bytes(), 16 * MiB + 1024, "took the 4 MiB block (best fit)");
    check_eq(dev.allocs, 3, "no new raw allocation for best fit");
    s5.reset();

    // release_cache returns everything to the raw allocator.
    const int frees_before = dev.frees;
    a.release_cache();
    check_eq(dev.frees - frees_before, 3, "release_cache raw-frees the 3 cached blocks");
    check_eq(a.cached_bytes(), 0, "cache empty after release_cache");
    check_eq(stats.reserved_bytes.load(), 0, "reserved_bytes = 0 after release_cache");
    check_eq(dev.in_use, 0, "fake device has nothing in use");

    // OOM with a cache: the cache is freed and the allocation retried.
    StoragePtr t1 = a.allocate(20 * MiB);
    t1.reset();  // 20 MiB cached, 12 MiB free on the fake device
    const int fail_before = dev.failures;
    StoragePtr t2 = a.allocate(24 * MiB);  // no cached fit, raw fails, cache freed, retry succeeds
    check(t2->data() != nullptr, "24 MiB allocation succeeds after freeing the cache");
    check_eq(dev.failures - fail_before, 1, "exactly one failed raw allocation before the retry");
    check_eq(a.cached_bytes(), 0, "cache was freed");
    check_eq(stats.reserved_bytes.load(), 24 * MiB, "reserved_bytes = 24 MiB");
    check_eq(stats.allocated_bytes.load(), 24 * MiB, "allocated_bytes = 24 MiB");

    // Truly out of memory: an OutOfMemory vl::Error with the sizes; counters unchanged.
    bool threw = false;
    try {
      StoragePtr t3 = a.allocate(10 * MiB);
    } catch (const vl::Error& e) {
      threw = true;
      const std::string m = e.what();
      std::printf("  message: %s\n", m.c_str());
      check(e.code() == vl::ErrorCode::OutOfMemory, "error code is OutOfMemory");
      check(m.find("cuda:0") != std::string::npos, "message names the device");
      check(m.find(std::to_string(10 * MiB)) != std::string::npos, "message has the requested bytes");
      check(m.find(std::to_string(24 * MiB) + " bytes allocated") != std::string::npos,
            "message has the allocated bytes");
      check(m.find("0 bytes cached") != std::string::npos, "message has the cached bytes");
    }
    check(threw, "10 MiB more than the limit throws");
    check_eq(stats.allocated_bytes.load(), 24 * MiB, "allocated_bytes unchanged after OOM");
    check_eq(stats.reserved_bytes.load(), 24 * MiB, "reserved_bytes unchanged after OOM");

    // OOM also when a cache exists but freeing it is not enough.
    StoragePtr t4 = a.allocate(2 * MiB);
    t4.reset();  // 2 MiB cached, 30 MiB in use
    threw = false;
    const int frees_b = dev.frees;
    try {
      a.allocate(9 * MiB);  // a 10 MiB block: 34 MiB even without the cache
    } catch (const vl::Error& e) {
      threw = e.code() == vl::ErrorCode::OutOfMemory &&
              std::string(e.what()).find(std::to_string(2 * MiB) + " bytes cached") != std::string::npos;
    }
    check(threw, "OOM after freeing a too-small cache reports the cached bytes");
    check_eq(dev.frees - frees_b, 1, "the cache was raw-freed before the retry");
    check_eq(stats.reserved_bytes.load(), 24 * MiB, "reserved_bytes = 24 MiB");
    t2.reset();

    // Zero-byte storages take no block.
    const int allocs_b = dev.allocs;
    StoragePtr z = a.allocate(0);
    check(z->data() == nullptr && z->nbytes() == 0, "allocate(0) gives an empty storage");
    check_eq(dev.allocs, allocs_b, "allocate(0) makes no raw allocation");
    z.reset();
    check_eq(stats.allocated_bytes.load(), 0, "allocated_bytes = 0");

    // Concurrent allocate/free keeps the counters consistent.
    a.release_cache();
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&a, t] {
        for (int i = 0; i < 2000; ++i) {
          StoragePtr s = a.allocate(static_cast<size_t>((i * 7 + t * 13) % 64 + 1) * KiB);
          static_cast<char*>(s->data())[0] = 1;
        }
      });
    for (auto& th : threads) th.join();
    check_eq(stats.allocated_bytes.load(), 0, "threads: allocated_bytes = 0 after all frees");
    check_eq(stats.reserved_bytes.load(), a.cached_bytes(), "threads: reserved_bytes = cached bytes");
    check_eq(static_cast<size_t>(stats.reserved_bytes.load()), dev.in_use, "threads: reserved matches the raw allocator");

    check_eq(stats.allocations.load(), 10 + 8000, "allocations counts every allocate() that succeeded");
  }
  check_eq(dev.in_use, 0, "destroying the allocator frees its cache");

  // A storage that outlives its allocator raw-frees its block when it goes away.
  {
    vl::MemoryStats stats2;
    StoragePtr survivor;
    {
      CachingAllocator b(
          cuda0, [&](size_t n) { return dev.alloc(n); }, [&](void* p) { dev.free(p); }, stats2);
      survivor = b.allocate(5000);
      StoragePtr cached = b.allocate(100);
    }
    check_eq(dev.in_use, 5120, "after the allocator is gone only the survivor's block is held");
    survivor.reset();
    check_eq(dev.in_use, 0, "the survivor's block is raw-freed");
    check_eq(stats2.allocated_bytes.load(), 0, "allocated_bytes = 0");
  }

  // A cache limit: blocks beyond it go back to the raw allocator.
  {
    vl::MemoryStats stats3;
    CachingAllocator c(
        cuda0, [&](size_t n) { return dev.alloc(n); }, [&](void* p) { dev.free(p); }, stats3, 1536);
    StoragePtr x = c.allocate(1024), y = c.allocate(1024);
    const int frees_before = dev.frees;
    x.reset();
    check_eq(c.cached_bytes(), 1024, "limit: the first block is cached");
    y.reset();
    check_eq(c.cached_bytes(), 1024, "limit: the second would exceed 1536 bytes and is not cached");
    check_eq(dev.frees, frees_before + 1, "limit: it was raw-freed");
    check_eq(stats3.cached_bytes.load(), 1024, "limit: cached_bytes counter matches");
    check_eq(stats3.reserved_bytes.load(), 1024, "limit: reserved = the cached block");
  }


  // Deferred storages take their block on first data(), so work queued ahead
  // reuses what earlier work released; never touched, they take nothing.
  {
    FakeDevice d2(8 * MiB);
    vl::MemoryStats stats4;
    CachingAllocator c(
        cuda0, [&](size_t n) { return d2.alloc(n); }, [&](void* p) { d2.free(p); }, stats4);
    StoragePtr a1 = c.allocate(3 * MiB, true), a2 = c.allocate(3 * MiB, true);
    check_eq(stats4.allocated_bytes.load(), 6 * MiB, "deferred: counted as allocated at once");
    check_eq(d2.allocs, 0, "deferred: no block taken before first use");
    check_eq(stats4.reserved_bytes.load(), 0, "deferred: nothing reserved yet");
    void* pa1 = a1->data();
    check(pa1 != nullptr && a1->data() == pa1, "deferred: first data() takes a block, later calls see the same");
    check_eq(stats4.reserved_bytes.load(), 4 * MiB, "deferred: reserved = one 4 MiB block");
    a1.reset();  // released before a2 is touched: a2 reuses its block
    check(a2->data() == pa1, "deferred: a later storage reuses the block an earlier one released");
    check_eq(d2.allocs, 1, "deferred: one raw allocation for two storages");
    StoragePtr untouched = c.allocate(1 * MiB, true);
    untouched.reset();
    check_eq(d2.allocs, 1, "deferred: a storage never touched takes no block");
    check_eq(stats4.allocated_bytes.load(), 3 * MiB, "deferred: its bytes leave the counters");
    StoragePtr big = c.allocate(6 * MiB, true);  // 4 MiB in use, 8 MiB device: cannot fit
    bool threw = false;
    try {
      big->data();
    } catch (const vl::Error& e) {
      threw = std::string(e.what()).find("out of memory") != std::string::npos;
    }
    check(threw, "deferred: running out of memory throws from data(), with the usual message");
    big.reset();
    a2.reset();
    check_eq(stats4.allocated_bytes.load(), 0, "deferred: allocated_bytes back to 0");
  }

  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
