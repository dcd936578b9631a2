// Launchers of the Hopper GEMM (see linalg_sm90.cuh). CMake builds this file
// for sm_90a only and defines VLLAMA_SM90A when it does.
#include "cuda/linalg_sm90.cuh"

#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "cuda/cuda_check.cuh"
#include "cuda/kernels/gemm_wgmma.cuh"

namespace vl {
namespace cuda {
namespace {

namespace g = kernels::gemm;

constexpr int kMaxDevices = 64;
// Per device: 0 not yet asked, 1 the wgmma kernels run there, 2 they do not.
std::atomic<int> g_wgmma_state[kMaxDevices];

bool device_runs_wgmma(int device) {
#if defined(VLLAMA_SM90A)
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  // sm_90a code runs on compute capability 9.0 only; the image must be there.
  cudaFuncAttributes attr;
  if (major != 9 || minor != 0 || cudaFuncGetAttributes(&attr, g::gemm_wgmma_kernel<false, simt::Bf16Ops>) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return attr.binaryVersion == 90;
#else
  (void)device;
  return false;
#endif
}

template <bool kSwiGLU, typename Ops>
void launch(g::Params<float, uint16_t, g::Rows> p, cudaStream_t stream, int device) {
  p.m_tiles = (p.M + g::kWgBM - 1) / g::kWgBM;
  p.n_tiles = (p.N + g::kWgBN - 1) / g::kWgBN;
  const int64_t blocks = g::grid_blocks(p, 1);
  if (blocks == 0) return;
  VL_CHECK(blocks <= INT_MAX, ErrorCode::Shape, "linear: up to ", INT_MAX, " output tiles of ", g::kWgBM, "x", g::kWgBN,
           " on CUDA, got ", blocks);
  auto kernel = g::gemm_wgmma_kernel<kSwiGLU, Ops>;
  static std::atomic<uint64_t> granted{0};
  allow_dynamic_shared(kernel, g::kWgSmemBytes, device, granted);
  kernel<<<static_cast<unsigned>(blocks), g::kWgThreads, g::kWgSmemBytes, stream>>>(p);
  check_launch("gemm_wgmma_kernel", device);
}

}  // namespace

bool wgmma_available(int device) {
  const char* choice = std::getenv("VLLAMA_CUDA_GEMM");
  if (choice && *choice && std::strcmp(choice, "auto") != 0) {
    VL_CHECK(std::strcmp(choice, "mma") == 0, ErrorCode::Argument,
             "VLLAMA_CUDA_GEMM must be \"auto\" (wgmma where the device has it) or \"mma\" (mma.sync everywhere), got \"",
             choice, "\"");
    return false;
  }
  if (device < 0 || device >= kMaxDevices) return false;
  int state = g_wgmma_state[device].load(std::memory_order_relaxed);
  if (state == 0) {
    state = device_runs_wgmma(device) ? 1 : 2;
    g_wgmma_state[device].store(state, std::memory_order_relaxed);
  }
  return state == 1;
}

void launch_gemm_wgmma(g::Params<float, uint16_t, g::Rows> p, bool swiglu, bool f16, cudaStream_t stream, int device) {
  if (swiglu && f16) return launch<true, simt::F16Ops>(p, stream, device);
  if (swiglu) return launch<true, simt::Bf16Ops>(p, stream, device);
  if (f16) return launch<false, simt::F16Ops>(p, stream, device);
  launch<false, simt::Bf16Ops>(p, stream, device);
}

}  // namespace cuda
}  // namespace vl
