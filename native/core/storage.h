// A block of device memory shared by tensors (views share one storage).
#pragma once
#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "core/device.h"

namespace vl {

class Storage {
 public:
  // Receives nullptr when a deferred storage was never touched.
  using Deleter = std::function<void(void*, size_t)>;
  // Returns the block for a deferred storage; throws (e.g. OutOfMemory) when it cannot.
  using Materializer = std::function<void*(size_t)>;

  Storage(Device device, void* data, size_t nbytes, Deleter deleter)
      : device_(device), data_(data), nbytes_(nbytes), deleter_(std::move(deleter)) {}
  // Deferred: the block is taken on first data(), normally by the kernel that
  // writes it on the device's stream thread. Work queued far ahead of the
  // stream then reuses blocks that earlier work has released, so a whole
  // forward queued at once needs only its live set, not every activation.
  Storage(Device device, size_t nbytes, Materializer materialize, Deleter deleter)
      : device_(device), data_(nullptr), nbytes_(nbytes), materialize_(std::move(materialize)),
        deleter_(std::move(deleter)) {}
  ~Storage() {
    if (deleter_) deleter_(data_.load(std::memory_order_acquire), nbytes_);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  Device device() const { return device_; }
  void* data() const {
    void* p = data_.load(std::memory_order_acquire);
    return p || !materialize_ ? p : materialize();
  }
  size_t nbytes() const { return nbytes_; }

  // A failed kernel marks the storages it should have written; later work that
  // reads them fails with the same message instead of computing on garbage.
  void set_error(const std::string& message) {
    std::lock_guard<std::mutex> lock(error_mutex_);
    if (error_.empty()) error_ = message;
  }
  std::string error() const {
    std::lock_guard<std::mutex> lock(error_mutex_);
    return error_;
  }

  // Number of JavaScript handles referencing this storage (drives MemoryStats::live_bytes).
  std::atomic<int> handle_refs{0};

 private:
  void* materialize() const {
    std::lock_guard<std::mutex> lock(materialize_mutex_);
    void* p = data_.load(std::memory_order_relaxed);
    if (!p) {
      p = materialize_(nbytes_);
      data_.store(p, std::memory_order_release);
    }
    return p;
  }

  Device device_;
  mutable std::atomic<void*> data_;
  size_t nbytes_;
  Materializer materialize_;
  Deleter deleter_;
  mutable std::mutex materialize_mutex_;
  mutable std::mutex error_mutex_;
  std::string error_;
};

using StoragePtr = std::shared_ptr<Storage>;

}  // namespace vl
