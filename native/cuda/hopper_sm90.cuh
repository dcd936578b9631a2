// What the Hopper paths (the *_sm90.cu files, built for sm_90a) share: whether
// their kernels run on a device, and the environment switches that keep a
// path on the kernels that run everywhere (for comparisons).
#pragma once

namespace vl {
namespace cuda {

// True on a compute capability 9.0 device when this build holds the sm_90a
// kernels; asked of the driver once per device.
bool sm90a_kernels_run(int device);

// The switch `env_name` (VLLAMA_CUDA_GEMM, VLLAMA_CUDA_ATTENTION): true when
// unset or "auto" (wgmma where the device has it), false for "mma" (mma.sync
// everywhere); any other value is an ArgumentError naming both choices.
bool hopper_path_enabled(const char* env_name);

}  // namespace cuda
}  // namespace vl
