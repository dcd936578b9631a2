// The kernels of native/cuda/kernels compiled by nvcc as the GPU runs them;
// .ci/run builds this to PTX for sm_80 and sm_90 and checks that the GEMM
// uses tensor-core instructions (mma.sync, ldmatrix), the pipelined GEMM
// its cp.async copies (and the attention backward's, where staged) and each
// fused attention kernel mma, ldmatrix.trans and
// cvt.bf16x2, and their f16 variants the f16 mma and cvt.f16x2. The same sources run through the SIMT runner in
// native/tests/simt_*_test.cc.
#include "cuda/kernels/activation.cuh"
#include "cuda/kernels/attention.cuh"
#include "cuda/kernels/attention_wgmma.cuh"
#include "cuda/kernels/cross_entropy.cuh"
#include "cuda/kernels/gemm.cuh"
#include "cuda/kernels/gemm_mma.cuh"
#include "cuda/kernels/gemm_wgmma.cuh"
#include "cuda/kernels/layer_norm.cuh"
#include "cuda/kernels/optim.cuh"
#include "cuda/kernels/softmax.cuh"

// The fused attention kernels (cuda/attention.cu launches every padded head width).
template __global__ void vl::cuda::kernels::attention_fwd<64, vl::cuda::kernels::AttnSplit, true>(vl::cuda::kernels::AttnFwdArgs);
template __global__ void vl::cuda::kernels::attention_fwd<128, vl::cuda::kernels::AttnBf16, false>(vl::cuda::kernels::AttnFwdArgs);
template __global__ void vl::cuda::kernels::attention_bwd_dkdv<64, vl::cuda::kernels::AttnSplit, true>(vl::cuda::kernels::AttnBwdArgs);
template __global__ void vl::cuda::kernels::attention_bwd_dq<64, vl::cuda::kernels::AttnSplit, true>(vl::cuda::kernels::AttnBwdArgs);
// f16 autocast.
template __global__ void vl::cuda::kernels::attention_fwd<64, vl::cuda::kernels::AttnF16, true>(vl::cuda::kernels::AttnFwdArgs);
template __global__ void vl::cuda::kernels::attention_bwd_dkdv<64, vl::cuda::kernels::AttnF16, false>(vl::cuda::kernels::AttnBwdArgs);
template __global__ void vl::cuda::kernels::attention_bwd_dq<64, vl::cuda::kernels::AttnF16, false>(vl::cuda::kernels::AttnBwdArgs);

// The Hopper attention forward (cuda/attention_sm90.cu; wgmma in its sm_90a build only).
template __global__ void vl::cuda::kernels::attention_fwd_wgmma<64, vl::cuda::kernels::AttnBf16>(vl::cuda::kernels::AttnFwdArgs, const uint16_t*);
template __global__ void vl::cuda::kernels::attention_fwd_wgmma<128, vl::cuda::kernels::AttnBf16>(vl::cuda::kernels::AttnFwdArgs, const uint16_t*);
template __global__ void vl::cuda::kernels::attention_fwd_wgmma<96, vl::cuda::kernels::AttnF16>(vl::cuda::kernels::AttnFwdArgs, const uint16_t*);
template __global__ void vl::cuda::kernels::attention_fwd_wgmma<64, vl::cuda::kernels::AttnSplit>(vl::cuda::kernels::AttnFwdArgs, const uint16_t*);
template __global__ void vl::cuda::kernels::attention_fwd_wgmma<128, vl::cuda::kernels::AttnSplit>(vl::cuda::kernels::AttnFwdArgs, const uint16_t*);
template __global__ void vl::cuda::kernels::attention_pack_kv<64, vl::cuda::kernels::AttnSplit>(vl::cuda::kernels::AttnFwdArgs, int64_t, uint16_t*);
// The Hopper dq kernel of the backward and its pack (keys, values, transposed keys).
template __global__ void vl::cuda::kernels::attention_bwd_dq_wgmma<64, vl::cuda::kernels::AttnBf16>(vl::cuda::kernels::AttnBwdArgs, const uint16_t*);
template __global__ void vl::cuda::kernels::attention_bwd_dq_wgmma<128, vl::cuda::kernels::AttnBf16>(vl::cuda::kernels::AttnBwdArgs, const uint16_t*);
template __global__ void vl::cuda::kernels::attention_bwd_dq_wgmma<128, vl::cuda::kernels::AttnF16>(vl::cuda::kernels::AttnBwdArgs, const uint16_t*);
template __global__ void vl::cuda::kernels::attention_bwd_dq_wgmma<64, vl::cuda::kernels::AttnSplit>(vl::cuda::kernels::AttnBwdArgs, const uint16_t*);
template __global__ void vl::cuda::kernels::attention_bwd_dkdv_wgmma<64, vl::cuda::kernels::AttnBf16>(vl::cuda::kernels::AttnBwdArgs, const uint16_t*);
template __global__ void vl::cuda::kernels::attention_bwd_dkdv_wgmma<96, vl::cuda::kernels::AttnF16>(vl::cuda::kernels::AttnBwdArgs, const uint16_t*);
template __global__ void vl::cuda::kernels::attention_bwd_dkdv_wgmma<64, vl::cuda::kernels::AttnSplit>(vl::cuda::kernels::AttnBwdArgs, const uint16_t*);
template __global__ void vl::cuda::kernels::attention_pack_kv<64, vl::cuda::kernels::AttnSplit, vl::cuda::kernels::kAttnPackDkdv>(vl::cuda::kernels::AttnFwdArgs, int64_t, uint16_t*);
template __global__ void vl::cuda::kernels::attention_pack_stats<64, vl::cuda::kernels::AttnSplit>(vl::cuda::kernels::AttnBwdArgs, int64_t, uint16_t*);
template __global__ void vl::cuda::kernels::attention_pack_kv<64, vl::cuda::kernels::AttnSplit, vl::cuda::kernels::kAttnPackDq>(vl::cuda::kernels::AttnFwdArgs, int64_t, uint16_t*);

template __global__ void vl::cuda::kernels::softmax_rows<128>(const float*, float*, float*, int);

// The GEMM variants the CUDA linear-algebra ops launch (cuda/linalg.cu).
namespace vl {
namespace cuda {
namespace kernels {
namespace gemm {
template __global__ void gemm_kernel<float, float, 3, false, true, Rows>(Params<float, float, Rows>);
template __global__ void gemm_kernel<float, uint16_t, 1, true, true, Rows>(Params<float, uint16_t, Rows>);
template __global__ void gemm_kernel<float, float, 3, false, false, Patches>(Params<float, float, Patches>);
template __global__ void gemm_kernel<uint16_t, uint16_t, 1, false, true, Rows>(Params<uint16_t, uint16_t, Rows>);
template __global__ void gemm_kernel<float, float, 1, false, true, Rows, simt::F16Ops>(Params<float, float, Rows>);
// Packed fp16 weights (f16 inference), SwiGLU.
template __global__ void gemm_kernel<float, uint16_t, 1, true, true, Rows, simt::F16Ops>(Params<float, uint16_t, Rows>);
// The Hopper GEMM (cuda/linalg_sm90.cu; wgmma in its sm_90a build only).
template __global__ void gemm_wgmma_kernel<1, false, simt::Bf16Ops>(VL_GRID_CONSTANT WgmmaParams);
template __global__ void gemm_wgmma_kernel<3, false, simt::Bf16Ops>(VL_GRID_CONSTANT WgmmaParams);
template __global__ void gemm_wgmma_kernel<1, true, simt::F16Ops>(VL_GRID_CONSTANT WgmmaParams);
template __global__ void pack_weight_rows<uint16_t, simt::F16Ops>(const float*, const float*, int64_t, int64_t, int64_t, int, int,
                                                                  int64_t, int, bool, uint16_t*);
template __global__ void pack_weight_rows<uint16_t, simt::Bf16Ops, true>(const float*, const float*, int64_t, int64_t, int64_t, int,
                                                                         int, int64_t, int, bool, uint16_t*);
}  // namespace gemm
}  // namespace kernels
}  // namespace cuda
}  // namespace vl
