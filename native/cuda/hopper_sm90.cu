// See hopper_sm90.cuh. CMake builds this file for sm_90a only and defines
// VLLAMA_SM90A when it does.
#include "cuda/hopper_sm90.cuh"

#include <cuda.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"
#include "cuda/simt.cuh"

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

namespace simt {

#if defined(VLLAMA_SM90A)
namespace {

// cuTensorMapEncodeTiled of the installed driver, reached through cudart so
// the package never links libcuda itself; null when the driver lacks it.
using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*, const cuuint64_t*,
                                 const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                                 CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
EncodeTiled encode_tiled() {
  static const EncodeTiled fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
    const cudaError_t err = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &found);
#else
    const cudaError_t err = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &p, cudaEnableDefault, &found);
#endif
    if (err != cudaSuccess || found != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return EncodeTiled{nullptr};
    }
    return reinterpret_cast<EncodeTiled>(p);
  }();
  return fn;
}

}  // namespace
#endif

std::string encode_tensor_map(TensorMap* out, const TensorMapSpec& s) {
#if defined(VLLAMA_SM90A)
  const EncodeTiled encode = encode_tiled();
  if (!encode) return "the CUDA driver has no cuTensorMapEncodeTiled (a driver for CUDA 12.0 or later is needed)";
  if (s.elem_bytes != 2 && s.elem_bytes != 4) return "elements of " + std::to_string(s.elem_bytes) + " bytes (2 or 4)";
  // Bit copies: zeros past the edges are +0 in every 16-bit format and in f32.
  const CUtensorMapDataType type = s.elem_bytes == 4 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32 : CU_TENSOR_MAP_DATA_TYPE_UINT16;
  const cuuint32_t element_strides[3] = {1, 1, 1};
  const CUresult r = encode(out, type, static_cast<cuuint32_t>(s.rank), const_cast<void*>(s.base), s.dims, s.strides, s.box,
                            element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) return "cuTensorMapEncodeTiled refused the tensor (CUresult " + std::to_string(static_cast<int>(r)) + ")";
  return "";
#else
  (void)out;
  (void)s;
  return "this build has no sm_90a kernels";
#endif
}

}  // namespace simt
}  // namespace vl
