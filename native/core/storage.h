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
  using Deleter = std::function<void(void*, size_t)>;
  Storage(Device device, void* data, size_t nbytes, Deleter deleter)
      : device_(device), data_(data), nbytes_(nbytes), deleter_(std::move(deleter)) {}
  ~Storage() {
    if (deleter_) deleter_(data_, nbytes_);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  Device device() const { return device_; }
  void* data() const { return data_; }
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
  Device device_;
  void* data_;
  size_t nbytes_;
  Deleter deleter_;
  mutable std::mutex error_mutex_;
  std::string error_;
};

using StoragePtr = std::shared_ptr<Storage>;

}  // namespace vl
