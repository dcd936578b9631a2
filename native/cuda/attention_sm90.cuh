// The Hopper path of the attention (attention_sm90.cu, built for sm_90a):
// the forward on wgmma at every precision, and the backward's dq and dk/dv
// where their registers fit (kernels/attention_wgmma.cuh).
// cuda/attention.cu asks wgmma_attention_available() and otherwise launches
// the mma.sync kernel of kernels/attention.cuh, which runs everywhere.
#pragma once
#include <cuda_runtime.h>

#include "core/backend.h"
#include "cuda/kernels/attention_tiles.cuh"

namespace vl {
namespace cuda {

// True on a compute capability 9.0 device when this build holds the sm_90a
// kernels and VLLAMA_CUDA_ATTENTION is unset or "auto" ("mma" keeps the
// attention on mma.sync; any other value is an ArgumentError).
bool wgmma_attention_available(int device);

// Queues the wgmma forward for `pairs` (batch, head) pairs in the
// arithmetic of the tag (AttnSplit: f32 as the 3-pass bf16 split; AttnBf16,
// AttnF16), when there is one for D's padded width: the keys and values
// packed into a temporary buffer from `device`'s allocator, then the query
// tiles; false (nothing queued) otherwise. a as for attention_fwd (q_tiles
// aside, which the wgmma tiles set for themselves); rows 16-byte aligned (a.vec).
bool launch_attention_wgmma(const kernels::AttnFwdArgs& a, int pairs, kernels::AttnSplit, cudaStream_t stream, Device device);
bool launch_attention_wgmma(const kernels::AttnFwdArgs& a, int pairs, kernels::AttnBf16, cudaStream_t stream, Device device);
bool launch_attention_wgmma(const kernels::AttnFwdArgs& a, int pairs, kernels::AttnF16, cudaStream_t stream, Device device);

// The same for the backward's dq (attention_bwd_dq_wgmma): the keys, values
// and transposed keys packed into a temporary buffer, then the query tiles;
// false (nothing queued) where there is no such kernel for D's padded width
// and the arithmetic. a as for attention_bwd_dq (tiles aside); q, k, v and
// dout rows 16-byte aligned (a.vec).
bool launch_attention_bwd_dq_wgmma(kernels::AttnBwdArgs a, int pairs, kernels::AttnSplit, cudaStream_t stream, Device device);
bool launch_attention_bwd_dq_wgmma(kernels::AttnBwdArgs a, int pairs, kernels::AttnBf16, cudaStream_t stream, Device device);
bool launch_attention_bwd_dq_wgmma(kernels::AttnBwdArgs a, int pairs, kernels::AttnF16, cudaStream_t stream, Device device);

// The same for dk and dv (attention_bwd_dkdv_wgmma): the queries, dOut,
// their transposes and the rows' lse and delta packed, then the key tiles.
bool launch_attention_bwd_dkdv_wgmma(kernels::AttnBwdArgs a, int pairs, kernels::AttnSplit, cudaStream_t stream, Device device);
bool launch_attention_bwd_dkdv_wgmma(kernels::AttnBwdArgs a, int pairs, kernels::AttnBf16, cudaStream_t stream, Device device);
bool launch_attention_bwd_dkdv_wgmma(kernels::AttnBwdArgs a, int pairs, kernels::AttnF16, cudaStream_t stream, Device device);

}  // namespace cuda
}  // namespace vl
