// Launcher of the Hopper attention forward (see attention_sm90.cuh). CMake
// builds this file for sm_90a only and defines VLLAMA_SM90A when it does.
#include "cuda/attention_sm90.cuh"

#include <atomic>
#include <climits>
#include <type_traits>

#include "core/backend.h"
#include "core/error.h"
#include "cuda/cuda_check.cuh"
#include "cuda/hopper_sm90.cuh"
#include "cuda/kernels/attention_wgmma.cuh"

namespace vl {
namespace cuda {
namespace {

// Packs the keys and values of `pairs` (batch, head) pairs for the Hopper
// kernels (in the layout kKind of kernels::AttnPack) into a
// temporary buffer from `device`'s allocator, handed back right after
// queuing (the device's work runs in stream order); then queues `blocks`
// blocks of `kernel` on it. a: the keys and values (k, v, k_rope, H, M, D, vec).
// `more(buffer)` queues any further packing into the buffer (the dk/dv
// kernel's stats) before the kernel.
template <int kDp, typename P, int kKind, typename Kernel, typename Args, typename More>
void pack_and_launch(const kernels::AttnFwdArgs& a, int pairs, int64_t blocks, Kernel kernel, const Args& args,
                     const char* name, cudaStream_t stream, Device device, More more) {
  const int dev = device.index;
  if (blocks == 0) return;
  VL_CHECK(blocks <= INT_MAX, ErrorCode::Shape, "attention: up to ", INT_MAX, " query tiles of ", kernels::kAttnWgRows,
           " rows on CUDA, got ", blocks);
  const int64_t elems = kernels::attn_wg_packed_elems<kDp, P, kKind>(pairs, a.M);
  StoragePtr packed = backend_for(device).allocate(device, static_cast<size_t>(elems) * sizeof(uint16_t));
  uint16_t* kv = static_cast<uint16_t*>(packed->data());
  const int64_t chunks = elems / 8 / P::kParts, pack_blocks = (chunks + 255) / 256;
  VL_CHECK(pack_blocks <= INT_MAX, ErrorCode::Shape, "attention: too many keys to pack for one CUDA launch: ", pairs,
           " (batch, head) pairs of ", a.M);
  kernels::attention_pack_kv<kDp, P, kKind><<<static_cast<unsigned>(pack_blocks), 256, 0, stream>>>(a, chunks, kv);
  check_launch("attention_pack_kv", dev);
  more(kv);
  constexpr int smem = kernels::kAttnWgSmemBytes<kDp, P, kKind>;
  static std::atomic<uint64_t> granted{0};
  allow_dynamic_shared(kernel, smem, dev, granted);
  kernel<<<static_cast<unsigned>(blocks), kernels::kAttnWgThreads, smem, stream>>>(args, kv);
  check_launch(name, dev);
}

template <int kDp, typename P>
void launch(kernels::AttnFwdArgs a, int pairs, cudaStream_t stream, Device device) {
  a.q_tiles = (a.N + kernels::kAttnWgRows - 1) / kernels::kAttnWgRows;
  pack_and_launch<kDp, P, kernels::kAttnPackFwd>(a, pairs, static_cast<int64_t>(a.q_tiles) * pairs, kernels::attention_fwd_wgmma<kDp, P>, a,
                                 "attention_fwd_wgmma", stream, device, [](uint16_t*) {});
}

template <int kDp, typename P>
void launch_dq(kernels::AttnBwdArgs a, int pairs, cudaStream_t stream, Device device) {
  kernels::AttnFwdArgs kv{};
  kv.k = a.k, kv.v = a.v, kv.k_rope = a.k_rope, kv.H = a.H, kv.M = a.M, kv.D = a.D, kv.vec = a.vec;
  a.tiles = (a.N + kernels::kAttnWgRows - 1) / kernels::kAttnWgRows;
  pack_and_launch<kDp, P, kernels::kAttnPackDq>(kv, pairs, static_cast<int64_t>(a.tiles) * pairs, kernels::attention_bwd_dq_wgmma<kDp, P>, a,
                                "attention_bwd_dq_wgmma", stream, device, [](uint16_t*) {});
}

template <int kDp, typename P>
void launch_dkdv(kernels::AttnBwdArgs a, int pairs, cudaStream_t stream, Device device) {
  // The packed rows are the queries (rotated) and dOut, with their lse and delta.
  kernels::AttnFwdArgs qd{};
  qd.k = a.q, qd.v = a.dout, qd.k_rope = a.q_rope, qd.H = a.H, qd.M = a.N, qd.D = a.D, qd.vec = a.vec;
  a.tiles = (a.M + kernels::kAttnWgRows - 1) / kernels::kAttnWgRows;
  using L = kernels::AttnPack<kDp, P, kernels::kAttnPackDkdv>;
  const auto stats = [&](uint16_t* out) {
    const int64_t rows = static_cast<int64_t>(pairs) * ((a.N + L::kBN - 1) / L::kBN) * L::kBN;
    kernels::attention_pack_stats<kDp, P><<<static_cast<unsigned>((rows + 255) / 256), 256, 0, stream>>>(a, rows, out);
    check_launch("attention_pack_stats", device.index);
  };
  pack_and_launch<kDp, P, kernels::kAttnPackDkdv>(qd, pairs, static_cast<int64_t>(a.tiles) * pairs,
                                                  kernels::attention_bwd_dkdv_wgmma<kDp, P>, a, "attention_bwd_dkdv_wgmma", stream,
                                                  device, stats);
}

// Calls launch(kd) for D's padded width kd when has(kd) (a std::bool_constant) says there is a kernel; false otherwise.
template <typename Has, typename Launch>
bool launch_if_width(int D, Has has, Launch launch) {
  bool launched = false;
  kernels::attn_with_padded_d(D, [&](auto kd) {
    if constexpr (decltype(has(kd))::value) {
      launch(kd);
      launched = true;
    }
  });
  return launched;
}

template <typename P>
bool launch_for_width(const kernels::AttnFwdArgs& a, int pairs, cudaStream_t stream, Device device) {
  return launch_if_width(
      a.D, [](auto kd) { return std::bool_constant<kernels::kAttnWgmmaWidth<decltype(kd)::value>>{}; },
      [&](auto kd) { launch<decltype(kd)::value, P>(a, pairs, stream, device); });
}

template <typename P>
bool launch_dq_for_width(const kernels::AttnBwdArgs& a, int pairs, cudaStream_t stream, Device device) {
  return launch_if_width(
      a.D, [](auto kd) { return std::bool_constant<kernels::kAttnWgDqWidth<decltype(kd)::value, P>>{}; },
      [&](auto kd) { launch_dq<decltype(kd)::value, P>(a, pairs, stream, device); });
}

template <typename P>
bool launch_dkdv_for_width(const kernels::AttnBwdArgs& a, int pairs, cudaStream_t stream, Device device) {
  return launch_if_width(
      a.D, [](auto kd) { return std::bool_constant<kernels::kAttnWgDkdvWidth<decltype(kd)::value, P>>{}; },
      [&](auto kd) { launch_dkdv<decltype(kd)::value, P>(a, pairs, stream, device); });
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

bool launch_attention_bwd_dkdv_wgmma(kernels::AttnBwdArgs a, int pairs, kernels::AttnSplit, cudaStream_t stream, Device device) {
  return launch_dkdv_for_width<kernels::AttnSplit>(a, pairs, stream, device);
}
bool launch_attention_bwd_dkdv_wgmma(kernels::AttnBwdArgs a, int pairs, kernels::AttnBf16, cudaStream_t stream, Device device) {
  return launch_dkdv_for_width<kernels::AttnBf16>(a, pairs, stream, device);
}
bool launch_attention_bwd_dkdv_wgmma(kernels::AttnBwdArgs a, int pairs, kernels::AttnF16, cudaStream_t stream, Device device) {
  return launch_dkdv_for_width<kernels::AttnF16>(a, pairs, stream, device);
}

}  // namespace cuda
}  // namespace vl
