// The CUDA backend. cudart is linked statically and loads the driver only on
// the first CUDA call, so the addon loads (and the CPU works) on machines
// without a GPU or driver; such a machine reports 0 devices and why.
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/caching_allocator.h"
#include "core/error.h"
#include "cuda/cuda_check.cuh"
#include "cuda/runtime.cuh"

namespace vl {
namespace cuda {
namespace {

// Host<->device copies go through pinned memory in chunks of at most this size,
// so a huge transfer does not pin a huge buffer.
constexpr size_t kMaxStaging = size_t(64) << 20;
constexpr size_t kMinStaging = size_t(1) << 20;

std::string error_text(cudaError_t err) {
  return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
}

struct DeviceState {
  explicit DeviceState(int i)
      : index(i),
        stream("cuda:" + std::to_string(i),
               [i] {
                 // Failure resurfaces as an error from the first CUDA call on this thread.
                 if (cudaSetDevice(i) != cudaSuccess) (void)cudaGetLastError();
               }),
        allocator(
            Device{DeviceType::CUDA, i},
            [i](size_t n) -> void* {
              // Runs on whichever thread first touches the block (usually the stream's).
              VL_CUDA_CHECK(cudaSetDevice(i), i);
              void* p = nullptr;
              const cudaError_t err = cudaMalloc(&p, n);
              if (err == cudaErrorMemoryAllocation) {
                (void)cudaGetLastError();
                return nullptr;
              }
              VL_CUDA_CHECK(err, i);
              return p;
            },
            [i](void* p) {
              // Errors here (e.g. cudaErrorCudartUnloading at exit) are not actionable.
              if (cudaSetDevice(i) != cudaSuccess || cudaFree(p) != cudaSuccess) (void)cudaGetLastError();
            },
            stats) {}

  int index;
  MemoryStats stats;  // declared before the allocator, which keeps a reference
  Stream stream;
  CachingAllocator allocator;

  std::once_flag stream_once;
  cudaStream_t cuda_stream = nullptr;
  std::once_flag flag_once;
  int* flag = nullptr;
  // Used only on the vl::Stream thread.
  void* staging = nullptr;
  size_t staging_size = 0;
};

// A CUDA event recorded on the device's stream: the GPU's own timestamp of
// that point of the stream order.
class CudaTimingMark final : public TimingMark {
 public:
  explicit CudaTimingMark(int device) : device_(device) {}
  ~CudaTimingMark() override {
    if (event_ && cudaEventDestroy(event_) != cudaSuccess) (void)cudaGetLastError();
  }
  // On the stream thread.
  void record(cudaStream_t stream) {
    VL_CUDA_CHECK(cudaEventCreate(&event_), device_);
    VL_CUDA_CHECK(cudaEventRecord(event_, stream), device_);
  }
  double elapsed_ms_since(const TimingMark& start) const override {
    const auto& s = static_cast<const CudaTimingMark&>(start);
    VL_CHECK(event_ && s.event_, ErrorCode::Runtime, "timing: a mark on cuda:", device_, " was not recorded");
    VL_CUDA_CHECK(cudaEventSynchronize(event_), device_);
    float ms = 0.0f;
    VL_CUDA_CHECK(cudaEventElapsedTime(&ms, s.event_, event_), device_);
    return ms;
  }

 private:
  int device_;
  cudaEvent_t event_ = nullptr;
};

class CudaBackend final : public Backend {
 public:
  DeviceType type() const override { return DeviceType::CUDA; }

  int device_count() override {
    init();
    return count_;
  }
  std::string unavailable_reason() override {
    init();
    return reason_;
  }
  std::string device_name(int index) override {
    DeviceState& s = state(index);
    cudaDeviceProp prop;
    VL_CUDA_CHECK(cudaGetDeviceProperties(&prop, s.index), s.index);
    return prop.name;
  }

  StoragePtr allocate(Device device, size_t nbytes) override { return state(device.index).allocator.allocate(nbytes, true); }
  Stream& stream(Device device) override { return state(device.index).stream; }
  MemoryStats& stats(Device device) override { return state(device.index).stats; }
  void release_cache(Device device) override { state(device.index).allocator.release_cache(); }

  TimingMarkPtr record_timing(Device device) override {
    DeviceState& s = state(device.index);
    auto mark = std::make_shared<CudaTimingMark>(device.index);
    s.stream.submit([this, &s, mark] {
      try {
        mark->record(cuda_stream(s));
      } catch (const std::exception&) {
        // Left unrecorded: elapsed_ms_since reports it.
      }
    });
    return mark;
  }

  void copy_from_host(void* dst, const void* src, size_t nbytes, Device device) override {
    DeviceState& s = state(device.index);
    const cudaStream_t cs = cuda_stream(s);
    for (size_t done = 0; done < nbytes;) {
      const size_t n = std::min(nbytes - done, kMaxStaging);
      ensure_staging(s, n);
      std::memcpy(s.staging, static_cast<const char*>(src) + done, n);
      VL_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + done, s.staging, n, cudaMemcpyHostToDevice, cs),
                    s.index);
      // The staging buffer is reused by the next chunk.
      VL_CUDA_CHECK(cudaStreamSynchronize(cs), s.index);
      done += n;
    }
  }

  void copy_to_host(void* dst, const void* src, size_t nbytes, Device device) override {
    DeviceState& s = state(device.index);
    const cudaStream_t cs = cuda_stream(s);
    for (size_t done = 0; done < nbytes;) {
      const size_t n = std::min(nbytes - done, kMaxStaging);
      ensure_staging(s, n);
      VL_CUDA_CHECK(cudaMemcpyAsync(s.staging, static_cast<const char*>(src) + done, n, cudaMemcpyDeviceToHost, cs),
                    s.index);
      VL_CUDA_CHECK(cudaStreamSynchronize(cs), s.index);
      std::memcpy(static_cast<char*>(dst) + done, s.staging, n);
      done += n;
    }
  }

  DeviceState& state(int index) {
    init();
    VL_CHECK(index >= 0 && index < count_, ErrorCode::Device, "device cuda:", index, " does not exist: ", count_,
             " cuda device(s) present");
    return *devices_[static_cast<size_t>(index)];
  }

  cudaStream_t cuda_stream(DeviceState& s) {
    std::call_once(s.stream_once, [&s] {
      VL_CUDA_CHECK(cudaSetDevice(s.index), s.index);
      // Non-blocking: no implicit synchronization with the legacy default stream.
      VL_CUDA_CHECK(cudaStreamCreateWithFlags(&s.cuda_stream, cudaStreamNonBlocking), s.index);
    });
    return s.cuda_stream;
  }

  int* flag(DeviceState& s) {
    std::call_once(s.flag_once, [&s] {
      VL_CUDA_CHECK(cudaSetDevice(s.index), s.index);
      VL_CUDA_CHECK(cudaMalloc(&s.flag, sizeof(int)), s.index);
    });
    return s.flag;
  }

 private:
  void init() {
    std::call_once(init_once_, [this] {
      int n = 0;
      const cudaError_t err = cudaGetDeviceCount(&n);
      (void)cudaGetLastError();
      if (err != cudaSuccess) {
        n = 0;
        reason_ = describe_init_error(err);
      } else if (n == 0) {
        reason_ = "no CUDA device found";
      }
      count_ = n;
      for (int i = 0; i < n; ++i) devices_.push_back(std::make_unique<DeviceState>(i));
    });
  }

  static std::string describe_init_error(cudaError_t err) {
    if (err == cudaErrorInsufficientDriver) {
      // Same code for "no driver" and "driver too old": tell them apart.
      void* lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
      if (lib == nullptr) return "no CUDA driver found (libcuda.so.1 cannot be loaded; " + error_text(err) + ")";
      dlclose(lib);
      int driver = 0;
      (void)cudaDriverGetVersion(&driver);
      (void)cudaGetLastError();
      return "the CUDA driver is too old (it supports CUDA " + std::to_string(driver / 1000) + "." +
             std::to_string(driver % 1000 / 10) + ", this build needs " + std::to_string(CUDART_VERSION / 1000) +
             "." + std::to_string(CUDART_VERSION % 1000 / 10) + "; " + error_text(err) + ")";
    }
    if (err == cudaErrorNoDevice) return "no CUDA device (" + error_text(err) + ")";
    return "CUDA initialization failed (" + error_text(err) + ")";
  }

  static void ensure_staging(DeviceState& s, size_t n) {
    if (s.staging_size >= n) return;
    const size_t size = std::min(kMaxStaging, std::max({n, kMinStaging, s.staging_size * 2}));
    if (s.staging) {
      void* old = s.staging;
      s.staging = nullptr;
      s.staging_size = 0;
      VL_CUDA_CHECK(cudaFreeHost(old), s.index);
    }
    VL_CUDA_CHECK(cudaMallocHost(&s.staging, size), s.index);
    s.staging_size = size;
  }

  std::once_flag init_once_;
  int count_ = 0;
  std::string reason_;
  std::vector<std::unique_ptr<DeviceState>> devices_;
};

CudaBackend* g_backend = nullptr;

const bool registered = [] {
  g_backend = new CudaBackend();  // lives for the whole process
  register_backend(g_backend);
  return true;
}();

}  // namespace

cudaStream_t current_stream(int device) { return g_backend->cuda_stream(g_backend->state(device)); }

int* error_flag(int device) { return g_backend->flag(g_backend->state(device)); }

}  // namespace cuda
}  // namespace vl
