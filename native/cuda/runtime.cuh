// What the CUDA kernels need from the CUDA backend (backend.cu).
#pragma once
#include <cuda_runtime.h>

namespace vl {
namespace cuda {

// The device's CUDA stream, created on first use. Call it only on that
// device's vl::Stream thread (where kernels and copies run): all work on a
// device is ordered on this one stream, which is what makes reusing cached
// blocks safe without device synchronization.
cudaStream_t current_stream(int device);

// A device-resident int that kernels set to report errors they cannot throw
// (e.g. integer division by zero). Same thread rule as current_stream.
int* error_flag(int device);

}  // namespace cuda
}  // namespace vl
