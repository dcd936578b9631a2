// Launchers of the Hopper GEMM (see linalg_sm90.cuh). CMake builds this file
// for sm_90a only and defines VLLAMA_SM90A when it does.
#include "cuda/linalg_sm90.cuh"

#include <atomic>
#include <climits>
#include <string>

#include "core/backend.h"
#include "core/error.h"
#include "cuda/cuda_check.cuh"
#include "cuda/element.cuh"
#include "cuda/hopper_sm90.cuh"
#include "cuda/kernels/gemm_wgmma.cuh"
#include "ops/linalg.h"

namespace vl {
namespace cuda {
namespace {

namespace g = kernels::gemm;

template <int kPasses, bool kSwiGLU, typename Ops>
void launch(g::Params<float, uint16_t, g::Rows> p, cudaStream_t stream, int device) {
  constexpr int bn = g::kWgBN<kPasses>;
  p.m_tiles = (p.M + g::kWgBM - 1) / g::kWgBM;
  p.n_tiles = (p.N + bn - 1) / bn;
  const int64_t blocks = g::grid_blocks(p, 1);
  if (blocks == 0) return;
  VL_CHECK(blocks <= INT_MAX, ErrorCode::Shape, "linear: up to ", INT_MAX, " output tiles of ", g::kWgBM, "x", bn,
           " on CUDA, got ", blocks);
  g::WgmmaParams w;
  w.p = p;
  const std::string why = g::make_wgmma_maps<kPasses>(w);
  VL_CHECK(why.empty(), ErrorCode::Runtime, "linear: the Hopper GEMM's TMA descriptor of ", why);
  auto kernel = g::gemm_wgmma_kernel<kPasses, kSwiGLU, Ops>;
  static std::atomic<uint64_t> granted{0};
  allow_dynamic_shared(kernel, g::kWgSmemBytes, device, granted);
  kernel<<<static_cast<unsigned>(blocks), g::kWgThreads, g::kWgSmemBytes, stream>>>(w);
  check_launch("gemm_wgmma_kernel", device);
}

template <int kPasses, typename Ops>
void launch(const g::Params<float, uint16_t, g::Rows>& p, bool swiglu, cudaStream_t stream, int device) {
  if (swiglu)
    launch<kPasses, true, Ops>(p, stream, device);
  else
    launch<kPasses, false, Ops>(p, stream, device);
}

// f32 B rows converted into pack_weight_rows' 16-bit layout (k permuted
// within 16, zero past K; hi and lo planes for the split) in a temporary
// buffer, then the product on them. The buffer is handed back right after
// queuing: the device's work runs in stream order.
template <int kPasses, typename Ops>
void launch_f32(const g::Params<float, float, g::Rows>& p, bool swiglu, cudaStream_t stream, Device device) {
  const int kpad = static_cast<int>(ops::cuda_packed_kpad(p.b_k));
  const int64_t plane = static_cast<int64_t>(p.N) * kpad;
  StoragePtr packed = backend_for(device).allocate(device, static_cast<size_t>(plane * (kPasses == 3 ? 2 : 1)) * sizeof(uint16_t));
  uint16_t* b16 = static_cast<uint16_t*>(packed->data());
  const int64_t ld = p.b_src.ld;
  g::pack_weight_rows<uint16_t, Ops, kPasses == 3>
      <<<grid_for(plane), kBlock, 0, stream>>>(p.b, p.b, ld, ld, 1, p.N, p.b_k, p.N, kpad, false, b16);
  check_launch("pack_weight_rows", device.index);
  launch<kPasses, Ops>(g::with_b(p, static_cast<const uint16_t*>(b16), kpad, kpad), swiglu, stream, device.index);
}

}  // namespace

bool wgmma_available(int device) { return hopper_path_enabled("VLLAMA_CUDA_GEMM") && sm90a_kernels_run(device); }

void launch_gemm_wgmma(g::Params<float, uint16_t, g::Rows> p, bool swiglu, bool f16, cudaStream_t stream, int device) {
  if (f16) return launch<1, simt::F16Ops>(p, swiglu, stream, device);
  launch<1, simt::Bf16Ops>(p, swiglu, stream, device);
}

void launch_gemm_wgmma_f32(const g::Params<float, float, g::Rows>& p, bool swiglu, ops::MathPrecision arith,
                           cudaStream_t stream, Device device) {
  if (p.M == 0 || p.N == 0) return;  // an empty grid: nothing to pack either
  switch (arith) {
    case ops::MathPrecision::F32: return launch_f32<3, simt::Bf16Ops>(p, swiglu, stream, device);
    case ops::MathPrecision::BF16: return launch_f32<1, simt::Bf16Ops>(p, swiglu, stream, device);
    case ops::MathPrecision::F16: return launch_f32<1, simt::F16Ops>(p, swiglu, stream, device);
  }
}

}  // namespace cuda
}  // namespace vl
