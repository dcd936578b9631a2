// The Hopper GEMM path of the linear ops (linalg_sm90.cu, built for sm_90a):
// packed bf16 / fp16 linears and SwiGLU on wgmma (kernels/gemm_wgmma.cuh).
// cuda/linalg.cu asks wgmma_available() and otherwise launches the mma.sync
// kernel of kernels/gemm.cuh, which runs everywhere.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/kernels/gemm.cuh"

namespace vl {
namespace cuda {

// True on a compute capability 9.0 device when this build holds the sm_90a
// kernels and VLLAMA_CUDA_GEMM is unset or "auto"; "mma" keeps every GEMM on
// mma.sync (for comparisons); any other value is an ArgumentError.
bool wgmma_available(int device);

// C = A B^T (+bias)(+residual), or the SwiGLU gate, for packed 16-bit rows
// (fp16 when f16, else bf16). p as for gemm_kernel; operands cp.async-aligned.
void launch_gemm_wgmma(kernels::gemm::Params<float, uint16_t, kernels::gemm::Rows> p, bool swiglu, bool f16,
                       cudaStream_t stream, int device);

}  // namespace cuda
}  // namespace vl
