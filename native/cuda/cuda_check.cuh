// Turns CUDA errors into vl::Error(Runtime, "<call> failed on cuda:N: <name>: <description>").
#pragma once
#include <cuda_runtime.h>

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

}  // namespace cuda
}  // namespace vl

#define VL_CUDA_CHECK(call, device) ::vl::cuda::check((call), #call, (device))
