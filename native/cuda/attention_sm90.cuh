// The Hopper path of the attention forward (attention_sm90.cu, built for
// sm_90a): wgmma at every precision (kernels/attention_wgmma.cuh).
// cuda/attention.cu asks wgmma_attention_available() and otherwise launches
// the mma.sync kernel of kernels/attention.cuh, which runs everywhere.
#pragma once
#include <cuda_runtime.h>

#include "core/backend.h"
#include "cuda/kernels/attention_tiles.cuh"
#include "ops/precision.h"

namespace vl {
namespace cuda {

// True on a compute capability 9.0 device when this build holds the sm_90a
// kernels and VLLAMA_CUDA_ATTENTION is unset or "auto" ("mma" keeps the
// attention on mma.sync; any other value is an ArgumentError).
bool wgmma_attention_available(int device);

// Queues the wgmma forward for `pairs` (batch, head) pairs, in the
// arithmetic of `precision` (F32: the 3-pass bf16 split), when there is one
// for D's padded width: the keys and values packed into a temporary
// buffer from `device`'s allocator, then the query tiles; false (nothing
// queued) otherwise. a as for attention_fwd except q_tiles, set here; rows
// 16-byte aligned (a.vec).
bool launch_attention_wgmma(kernels::AttnFwdArgs a, int pairs, ops::MathPrecision precision, cudaStream_t stream,
                            Device device);

}  // namespace cuda
}  // namespace vl
