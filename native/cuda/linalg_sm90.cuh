// The Hopper GEMM path of the linear ops (linalg_sm90.cu, built for sm_90a):
// linears, SwiGLU and matmuls on wgmma (kernels/gemm_wgmma.cuh), packed
// bf16 / fp16 weights as they are, f32 operands in any arithmetic.
// cuda/linalg.cu asks wgmma_available() and otherwise launches the mma.sync
// kernel of kernels/gemm.cuh, which runs everywhere.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/device.h"
#include "cuda/kernels/gemm.cuh"
#include "ops/precision.h"

namespace vl {
namespace cuda {

// True on a compute capability 9.0 device when this build holds the sm_90a
// kernels and VLLAMA_CUDA_GEMM is unset or "auto"; "mma" keeps every GEMM on
// mma.sync (for comparisons); any other value is an ArgumentError.
bool wgmma_available(int device);

// C = A B^T (+bias)(+residual), or the SwiGLU gate, for packed 16-bit rows
// (fp16 when f16, else bf16). p as for gemm_kernel; rows 16-byte aligned (base
// and stride: what cp.async and TMA need), M and N at least 1 or nothing runs.
void launch_gemm_wgmma(kernels::gemm::Params<float, uint16_t, kernels::gemm::Rows> p, bool swiglu, bool f16,
                       cudaStream_t stream, int device);

// The same for f32 B rows (a linear's f32 weight, packed f32 rows, or a
// matmul's B) in the arithmetic `arith` (f32: the 3-pass bf16 split): B is
// first converted into a temporary 16-bit copy from `device`'s allocator,
// O(N K) work beside the product's O(M N K). p as for gemm_kernel, one batch.
void launch_gemm_wgmma_f32(const kernels::gemm::Params<float, float, kernels::gemm::Rows>& p, bool swiglu,
                           ops::MathPrecision arith, cudaStream_t stream, Device device);

}  // namespace cuda
}  // namespace vl
