// See hopper_sm90.cuh. CMake builds this file for sm_90a only and defines
// VLLAMA_SM90A when it does.
#include "cuda/hopper_sm90.cuh"

#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace vl {
namespace cuda {
namespace {

#if defined(VLLAMA_SM90A)
// Compiled with the Hopper kernels: where its image is sm_90a, theirs is too.
__global__ void sm90a_probe() {}
#endif

constexpr int kMaxDevices = 64;
// Per device: 0 not yet asked, 1 the sm_90a kernels run there, 2 they do not.
std::atomic<int> g_state[kMaxDevices];

bool ask_driver(int device) {
#if defined(VLLAMA_SM90A)
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  // sm_90a code runs on compute capability 9.0 only; the image must be there.
  cudaFuncAttributes attr;
  if (major != 9 || minor != 0 || cudaFuncGetAttributes(&attr, sm90a_probe) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return attr.binaryVersion == 90;
#else
  (void)device;
  return false;
#endif
}

}  // namespace

bool sm90a_kernels_run(int device) {
  if (device < 0 || device >= kMaxDevices) return false;
  int state = g_state[device].load(std::memory_order_relaxed);
  if (state == 0) {
    state = ask_driver(device) ? 1 : 2;
    g_state[device].store(state, std::memory_order_relaxed);
  }
  return state == 1;
}

bool hopper_path_enabled(const char* env_name) {
  const char* choice = std::getenv(env_name);
  if (!choice || !*choice || std::strcmp(choice, "auto") == 0) return true;
  VL_CHECK(std::strcmp(choice, "mma") == 0, ErrorCode::Argument, env_name,
           " must be \"auto\" (wgmma where the device has it) or \"mma\" (mma.sync everywhere), got \"", choice, "\"");
  return false;
}

}  // namespace cuda
}  // namespace vl
