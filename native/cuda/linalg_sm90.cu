// Launchers of the Hopper GEMM (see linalg_sm90.cuh). CMake builds this file
// for sm_90a only and defines VLLAMA_SM90A when it does.
#include "cuda/linalg_sm90.cuh"

#include <atomic>
#include <climits>

#include "core/error.h"
#include "cuda/cuda_check.cuh"
#include "cuda/hopper_sm90.cuh"
#include "cuda/kernels/gemm_wgmma.cuh"

namespace vl {
namespace cuda {
namespace {

namespace g = kernels::gemm;

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

bool wgmma_available(int device) { return hopper_path_enabled("VLLAMA_CUDA_GEMM") && sm90a_kernels_run(device); }

void launch_gemm_wgmma(g::Params<float, uint16_t, g::Rows> p, bool swiglu, bool f16, cudaStream_t stream, int device) {
  if (swiglu && f16) return launch<true, simt::F16Ops>(p, stream, device);
  if (swiglu) return launch<true, simt::Bf16Ops>(p, stream, device);
  if (f16) return launch<false, simt::F16Ops>(p, stream, device);
  launch<false, simt::Bf16Ops>(p, stream, device);
}

}  // namespace cuda
}  // namespace vl
