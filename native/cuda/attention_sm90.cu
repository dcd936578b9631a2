// Launcher of the Hopper attention forward (see attention_sm90.cuh). CMake
// builds this file for sm_90a only and defines VLLAMA_SM90A when it does.
#include "cuda/attention_sm90.cuh"

#include <atomic>
#include <climits>

#include "core/backend.h"
#include "core/error.h"
#include "cuda/cuda_check.cuh"
#include "cuda/hopper_sm90.cuh"
#include "cuda/kernels/attention_wgmma.cuh"

namespace vl {
namespace cuda {
namespace {

// Packs the keys and values of `pairs` (batch, head) pairs for the Hopper
// kernels (the forward's layout, or the dq kernel's with kDq) into a
// temporary buffer from `device`'s allocator, handed back right after
// queuing (the device's work runs in stream order); then queues `blocks`
// blocks of `kernel` on it. a: the keys and values (k, v, k_rope, H, M, D, vec).
template <int kDp, typename P, bool kDq, typename Kernel, typename Args>
void pack_and_launch(const kernels::AttnFwdArgs& a, int pairs, int64_t blocks, Kernel kernel, const Args& args,
                     const char* name, cudaStream_t stream, Device device) {
  const int dev = device.index;
  if (blocks == 0) return;
  VL_CHECK(blocks <= INT_MAX, ErrorCode::Shape, "attention: up to ", INT_MAX, " query tiles of ", kernels::kAttnWgRows,
           " rows on CUDA, got ", blocks);
  const int64_t elems = kernels::attn_wg_packed_elems<kDp, P, kDq>(pairs, a.M);
  StoragePtr packed = backend_for(device).allocate(device, static_cast<size_t>(elems) * sizeof(uint16_t));
  uint16_t* kv = static_cast<uint16_t*>(packed->data());
  const int64_t chunks = elems / 8 / P::kParts, pack_blocks = (chunks + 255) / 256;
  VL_CHECK(pack_blocks <= INT_MAX, ErrorCode::Shape, "attention: too many keys to pack for one CUDA launch: ", pairs,
           " (batch, head) pairs of ", a.M);
  kernels::attention_pack_kv<kDp, P, kDq><<<static_cast<unsigned>(pack_blocks), 256, 0, stream>>>(a, chunks, kv);
  check_launch("attention_pack_kv", dev);
  constexpr int smem = kernels::kAttnWgSmemBytes<kDp, P, kDq>;
  static std::atomic<uint64_t> granted{0};
  allow_dynamic_shared(kernel, smem, dev, granted);
  kernel<<<static_cast<unsigned>(blocks), kernels::kAttnWgThreads, smem, stream>>>(args, kv);
  check_launch(name, dev);
}

template <int kDp, typename P>
void launch(kernels::AttnFwdArgs a, int pairs, cudaStream_t stream, Device device) {
  a.q_tiles = (a.N + kernels::kAttnWgRows - 1) / kernels::kAttnWgRows;
  pack_and_launch<kDp, P, false>(a, pairs, static_cast<int64_t>(a.q_tiles) * pairs, kernels::attention_fwd_wgmma<kDp, P>, a,
                                 "attention_fwd_wgmma", stream, device);
}

template <int kDp, typename P>
void launch_dq(kernels::AttnBwdArgs a, int pairs, cudaStream_t stream, Device device) {
  kernels::AttnFwdArgs kv{};
  kv.k = a.k, kv.v = a.v, kv.k_rope = a.k_rope, kv.H = a.H, kv.M = a.M, kv.D = a.D, kv.vec = a.vec;
  a.tiles = (a.N + kernels::kAttnWgRows - 1) / kernels::kAttnWgRows;
  pack_and_launch<kDp, P, true>(kv, pairs, static_cast<int64_t>(a.tiles) * pairs, kernels::attention_bwd_dq_wgmma<kDp, P>, a,
                                "attention_bwd_dq_wgmma", stream, device);
}

template <typename P>
bool launch_for_width(const kernels::AttnFwdArgs& a, int pairs, cudaStream_t stream, Device device) {
  bool launched = false;
  kernels::attn_with_padded_d(a.D, [&](auto kd) {
    constexpr int kDp = decltype(kd)::value;
    if constexpr (kernels::kAttnWgmmaWidth<kDp>) {
      launch<kDp, P>(a, pairs, stream, device);
      launched = true;
    }
  });
  return launched;
}

template <typename P>
bool launch_dq_for_width(const kernels::AttnBwdArgs& a, int pairs, cudaStream_t stream, Device device) {
  bool launched = false;
  kernels::attn_with_padded_d(a.D, [&](auto kd) {
    constexpr int kDp = decltype(kd)::value;
    if constexpr (kernels::kAttnWgDqWidth<kDp, P>) {
      launch_dq<kDp, P>(a, pairs, stream, device);
      launched = true;
    }
  });
  return launched;
}

}  // namespace

bool wgmma_attention_available(int device) {
  return hopper_path_enabled("VLLAMA_CUDA_ATTENTION") && sm90a_kernels_run(device);
}

bool launch_attention_wgmma(const kernels::AttnFwdArgs& a, int pairs, kernels::AttnSplit, cudaStream_t stream, Device device) {
  return launch_for_width<kernels::AttnSplit>(a, pairs, stream, device);
}
bool launch_attention_wgmma(const kernels::AttnFwdArgs& a, int pairs, kernels::AttnBf16, cudaStream_t stream, Device device) {
  return launch_for_width<kernels::AttnBf16>(a, pairs, stream, device);
}
bool launch_attention_wgmma(const kernels::AttnFwdArgs& a, int pairs, kernels::AttnF16, cudaStream_t stream, Device device) {
  return launch_for_width<kernels::AttnF16>(a, pairs, stream, device);
}

bool launch_attention_bwd_dq_wgmma(kernels::AttnBwdArgs a, int pairs, kernels::AttnSplit, cudaStream_t stream, Device device) {
  return launch_dq_for_width<kernels::AttnSplit>(a, pairs, stream, device);
}
bool launch_attention_bwd_dq_wgmma(kernels::AttnBwdArgs a, int pairs, kernels::AttnBf16, cudaStream_t stream, Device device) {
  return launch_dq_for_width<kernels::AttnBf16>(a, pairs, stream, device);
}
bool launch_attention_bwd_dq_wgmma(kernels::AttnBwdArgs a, int pairs, kernels::AttnF16, cudaStream_t stream, Device device) {
  return launch_dq_for_width<kernels::AttnF16>(a, pairs, stream, device);
}

}  // namespace cuda
}  // namespace vl
