// Turns CUDA errors into vl::Error(Runtime, "<call> failed on cuda:N: <name>: <description>").
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "core/error.h"

namespace vl {
namespace cuda {

inline void check(cudaError_t err, const char* call, int device) {
  if (err == cudaSuccess) return;
  // Clear the error so later calls do not report it again (sticky errors stay anyway).
  (void)cudaGetLastError();
  std::string name(call);
  const size_t paren = name.find('(');
  if (paren != std::string::npos) name.resize(paren);  // "cudaMalloc(&p, n)" -> "cudaMalloc"
  fail(ErrorCode::Runtime, name, " failed on cuda:", device, ": ", cudaGetErrorName(err), ": ",
       cudaGetErrorString(err));
}

// Call right after a <<<...>>> launch: reports bad launch configurations.
inline void check_launch(const char* kernel, int device) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    fail(ErrorCode::Runtime, "launch of kernel ", kernel, " failed on cuda:", device, ": ", cudaGetErrorName(err),
         ": ", cudaGetErrorString(err));
}

// Lets `kernel` take `bytes` of dynamic shared memory (above the default 48
// KiB a kernel must ask), once per device: `granted` holds a bit per device
// index, one word per kernel variant (a function-local static at the caller).
template <typename Kernel>
void allow_dynamic_shared(Kernel kernel, int bytes, int device, std::atomic<uint64_t>& granted) {
  const uint64_t bit = uint64_t(1) << (device & 63);
  if (granted.load(std::memory_order_relaxed) & bit) return;
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
        "cudaFuncSetAttribute", device);
  granted.fetch_or(bit);
}

}  // namespace cuda
}  // namespace vl

#define VL_CUDA_CHECK(call, device) ::vl::cuda::check((call), #call, (device))
