// The interface every device backend implements (CPU always; CUDA when built).
// Ops never copy between devices behind the caller's back: a tensor reaches
// another device only through an explicit transfer.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "core/device.h"
#include "core/memory_stats.h"
#include "core/storage.h"
#include "core/stream.h"

namespace vl {

// A point in a device's stream order, and when the device got there: what
// kernel timings are measured between (a CUDA event on GPUs).
class TimingMark {
 public:
  virtual ~TimingMark() = default;
  // Milliseconds from `start` (recorded earlier on the same device) to this
  // mark. Runs on the device's stream thread, after both were recorded; waits
  // for the device to reach this mark.
  virtual double elapsed_ms_since(const TimingMark& start) const = 0;
};
using TimingMarkPtr = std::shared_ptr<TimingMark>;

class Backend {
 public:
  virtual ~Backend() = default;
  virtual DeviceType type() const = 0;
  // Number of usable devices; 0 when the backend is built but cannot run here.
  virtual int device_count() = 0;
  // Empty when usable, else why not (e.g. "no CUDA driver").
  virtual std::string unavailable_reason() = 0;
  // What device `index` is, for reports (the GPU's product name); by default its id.
  virtual std::string device_name(int index) { return Device{type(), index}.str(); }
  // The block is taken on first use, in stream order (see Storage); running out
  // of memory then fails the kernel that needed it, with an OutOfMemory message.
  virtual StoragePtr allocate(Device device, size_t nbytes) = 0;
  virtual Stream& stream(Device device) = 0;
  virtual MemoryStats& stats(Device device) = 0;
  // Called on this backend's stream thread; both return when the copy is complete.
  virtual void copy_to_host(void* dst, const void* src, size_t nbytes, Device device) = 0;
  virtual void copy_from_host(void* dst, const void* src, size_t nbytes, Device device) = 0;
  // Returns cached blocks to the system (no-op without a cache).
  virtual void release_cache(Device) {}
  // Queues a timing mark on the device's stream. The default reads the host
  // clock when the stream thread gets there: the device time of a backend
  // whose kernels run on that thread (the CPU).
  virtual TimingMarkPtr record_timing(Device device);
};

void register_backend(Backend* backend);
// nullptr when this build has no such backend.
Backend* find_backend(DeviceType type);
// The backend for `device`; throws a Device error when it is not built,
// unavailable here, or the index is out of range.
Backend& backend_for(Device device);

}  // namespace vl
