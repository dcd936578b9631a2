// Fused AS2DRoPE attention on CUDA, forward and backward, with the inputs,
// attributes and outputs of cpu/attention.cc and cpu/attention_backward.cc
// (ops/attention.cc sets them up). Kernels: cuda/kernels/attention.cuh, which
// the test suite runs through the SIMT runner against double references.
//
// Forward: RoPE tables for the queries (and the keys, unless they share the
// queries' positions), then one flash-attention kernel (on a Hopper device,
// attention_sm90.cu's wgmma kernels). Backward: the tables,
// delta = rowsum(dOut ⊙ out), then the dk/dv kernel and the dq kernel, whose
// streamed tiles go through cp.async where that costs no resident blocks.
// Temporary buffers come from the device allocator (memory counters see
// them); handing them back right after queuing is safe because all work on a
// device runs in stream order.
#include <algorithm>
#include <atomic>
#include <climits>
#include <string>
#include <type_traits>

#include "core/backend.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "cuda/attention_sm90.cuh"
#include "cuda/cuda_check.cuh"
#include "cuda/kernels/attention.cuh"
#include "cuda/runtime.cuh"
#include "ops/precision.h"

namespace vl {
namespace cuda {
namespace {

using kernels::AttnOutTensor;
using kernels::AttnTensor;

constexpr int kTableThreads = 256;

// The arithmetic of attr "wtype" (ops::MathPrecision, see attention.cuh):
// f32 products as 3×bf16 on tensor cores, or one bf16 or fp16 pass (autocast).
template <typename F>
void with_arith(const KernelCall& c, F f) {
  switch (static_cast<ops::MathPrecision>(c.attrs.integer("wtype"))) {
    case ops::MathPrecision::F32: return f(kernels::AttnSplit{});
    case ops::MathPrecision::BF16: return f(kernels::AttnBf16{});
    case ops::MathPrecision::F16: return f(kernels::AttnF16{});
  }
  fail(ErrorCode::Runtime, "attention: unknown arithmetic precision ", c.attrs.integer("wtype"));
}

struct Dims {
  int B, N, H, D, M;
};

Dims check_dims(const KernelCall& c, size_t q_index, const char* op) {
  const TensorArg &q = c.in[q_index], &k = c.in[q_index + 1];
  const int64_t B = q.shape[0], N = q.shape[1], H = q.shape[2], D = q.shape[3], M = k.shape[1];
  VL_CHECK(D <= kernels::kAttnMaxD, ErrorCode::Shape, op, ": on CUDA the head width D must be a multiple of 4 from 16 to ",
           kernels::kAttnMaxD, " (kernels for padded widths 16, 32, 48, 64, 80, 96, 112, 128), got D = ", D);
  VL_CHECK(N <= INT_MAX - 64 && M <= INT_MAX - 64 &&
               B * H * ((std::max(N, M) + kernels::kAttnRows - 1) / kernels::kAttnRows) <= INT_MAX,
           ErrorCode::Shape, op, ": too many tokens or (batch, head) pairs for one CUDA launch: B ", B, ", heads ", H,
           ", N ", N, ", M ", M);
  return {static_cast<int>(B), static_cast<int>(N), static_cast<int>(H), static_cast<int>(D), static_cast<int>(M)};
}

AttnTensor tensor(const TensorArg& t) {
  return {static_cast<const float*>(t.data), t.strides[0], t.strides[1], t.strides[2]};
}
AttnOutTensor out_tensor(const TensorArg& t) {
  return {static_cast<float*>(t.data), t.strides[0], t.strides[1], t.strides[2]};
}
// dOut and out [B, N, heads·D] as [B, N, heads, D].
AttnTensor rows_tensor(const TensorArg& t, int D) {
  return {static_cast<const float*>(t.data), t.strides[0], t.strides[1], D};
}

// 16-byte loads need every row start aligned: the base and the strides in floats.
bool aligned16(const AttnTensor& t) {
  return reinterpret_cast<uintptr_t>(t.data) % 16 == 0 && t.sb % 4 == 0 && t.st % 4 == 0 && t.sh % 4 == 0;
}

// The RoPE tables of the queries and keys (keys sharing the queries'
// positions share their table), or none when "rope" is off.
struct Tables {
  StoragePtr storage;
  const float* q = nullptr;
  const float* k = nullptr;
};

Tables rope_tables(const KernelCall& c, size_t first_position, const Dims& d, cudaStream_t stream) {
  Tables t;
  if (c.attrs.integer("rope") == 0) return t;
  const bool shared = c.attrs.integer("k_same") != 0;
  const int64_t rows = d.N + (shared ? 0 : d.M);
  t.storage = backend_for(c.device).allocate(c.device, static_cast<size_t>(rows * d.D) * sizeof(float));
  float* base = static_cast<float*>(t.storage->data());
  const kernels::AttnFreqs freqs = kernels::attn_freqs(d.D);
  size_t next = first_position;
  auto fill = [&](const char* prefix, int count, float* table) {
    const int quarter = d.D / 4;
    const int64_t entries = static_cast<int64_t>(count) * quarter;
    kernels::rope_table<<<static_cast<unsigned>((entries + kTableThreads - 1) / kTableThreads), kTableThreads, 0,
                          stream>>>(read_rope_positions(c, prefix, &next), freqs, count, quarter, table);
    check_launch("rope_table", c.device.index);
  };
  fill("q_", d.N, base);
  t.q = base;
  if (shared) {
    t.k = t.q;
  } else {
    fill("k_", d.M, base + static_cast<int64_t>(d.N) * d.D);
    t.k = base + static_cast<int64_t>(d.N) * d.D;
  }
  return t;
}

// Lets kKernel use `bytes` of dynamic shared memory: above the default 48 KiB
// a kernel must ask, once per device (a bit per device index, one word per
// kernel). The backward's 102 KiB for D > 112 fit sm_80/sm_90 (163/227 KiB),
// not sm_86/sm_89 (99 KiB): that is an error naming both sizes.
template <auto kKernel>
void allow_shared(int bytes, int dev, const char* op, int D) {
  static std::atomic<uint64_t> granted{0};
  const uint64_t bit = uint64_t(1) << (dev & 63);
  if (granted.load(std::memory_order_relaxed) & bit) return;
  int optin = 0;
  VL_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), dev);
  VL_CHECK(bytes <= optin, ErrorCode::Runtime, op, ": the CUDA kernels for D = ", D, " need ", bytes / 1024,
           " KiB of shared memory per block; cuda:", dev, " allows ", optin / 1024, " KiB");
  VL_CUDA_CHECK(cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), dev);
  granted.fetch_or(bit);
}

// Whether the backward kernels for kDp / P stream their tiles through
// cp.async on device dev: when the staging tiles fit and cost no resident
// blocks per SM (measured with the occupancy calculator, once per device).
// Otherwise a block's loads overlap with the other resident blocks' work.
template <int kDp, typename P>
bool backward_async(int dev) {
  static std::atomic<uint64_t> decided{0}, chosen{0};
  const uint64_t bit = uint64_t(1) << (dev & 63);
  if (decided.load(std::memory_order_acquire) & bit) return chosen.load(std::memory_order_relaxed) & bit;
  constexpr int plain = kernels::kAttnBwdSmemBytes<kDp, P, false>, staged = kernels::kAttnBwdSmemBytes<kDp, P, true>;
  int optin = 0;
  VL_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), dev);
  bool async = staged <= optin;
  if (async) {
    allow_shared<kernels::attention_bwd_dkdv<kDp, P, true>>(staged, dev, "attentionBackward", kDp);
    allow_shared<kernels::attention_bwd_dq<kDp, P, true>>(staged, dev, "attentionBackward", kDp);
    allow_shared<kernels::attention_bwd_dkdv<kDp, P, false>>(plain, dev, "attentionBackward", kDp);
    allow_shared<kernels::attention_bwd_dq<kDp, P, false>>(plain, dev, "attentionBackward", kDp);
    const auto blocks = [&](auto kernel, int bytes) {
      int n = 0;
      VL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kernels::kAttnThreads, bytes), dev);
      return n;
    };
    async = blocks(kernels::attention_bwd_dkdv<kDp, P, true>, staged) >=
                blocks(kernels::attention_bwd_dkdv<kDp, P, false>, plain) &&
            blocks(kernels::attention_bwd_dq<kDp, P, true>, staged) >= blocks(kernels::attention_bwd_dq<kDp, P, false>, plain);
  }
  if (async) chosen.fetch_or(bit, std::memory_order_relaxed);
  decided.fetch_or(bit, std::memory_order_release);
  return async;
}

// Inputs: q, k, v, then explicit positions; outputs: out [B, N, heads·D], lse [B, heads, N]?
void attention(const KernelCall& c) {
  const Dims d = check_dims(c, 0, "attention");
  const int dev = c.device.index;
  cudaStream_t stream = current_stream(dev);
  const Tables tables = rope_tables(c, 3, d, stream);
  kernels::AttnFwdArgs a{};
  a.q = tensor(c.in[0]), a.k = tensor(c.in[1]), a.v = tensor(c.in[2]);
  a.out = static_cast<float*>(c.out[0].data);
  a.lse = c.out.size() > 1 ? static_cast<float*>(c.out[1].data) : nullptr;
  a.H = d.H, a.N = d.N, a.M = d.M, a.D = d.D;
  a.q_tiles = (d.N + kernels::kAttnRows - 1) / kernels::kAttnRows;
  a.scale_log2 = static_cast<float>(c.attrs.num("scale")) * kernels::kLog2e;
  a.q_rope = tables.q, a.k_rope = tables.k;
  a.vec = aligned16(a.q) && aligned16(a.k) && aligned16(a.v);
  const unsigned blocks = static_cast<unsigned>(a.q_tiles) * static_cast<unsigned>(d.B * d.H);
  // Aligned rows stream through cp.async (the next keys while the current ones are computed on).
  const auto launch = [&](auto kd, auto async, auto arith) {
    constexpr int kDp = decltype(kd)::value;
    constexpr bool kAsync = decltype(async)::value;
    using P = decltype(arith);
    constexpr int smem = kernels::kAttnFwdSmemBytes<kDp, P, kAsync>;
    allow_shared<kernels::attention_fwd<kDp, P, kAsync>>(smem, dev, "attention", d.D);
    kernels::attention_fwd<kDp, P, kAsync><<<blocks, kernels::kAttnThreads, smem, stream>>>(a);
  };
  // On a Hopper device both products run on wgmma, where there is a kernel
  // for the width (it reads the queries through cp.async: aligned rows).
  const bool hopper = a.vec && wgmma_attention_available(dev);
  bool launched = false;
  with_arith(c, [&](auto arith) {
    if (hopper && launch_attention_wgmma(a, d.B * d.H, arith, stream, c.device)) {
      launched = true;
      return;
    }
    launched = kernels::attn_with_padded_d(d.D, [&](auto kd) {
      if (a.vec)
        launch(kd, std::true_type{}, arith);
      else
        launch(kd, std::false_type{}, arith);
    });
  });
  VL_CHECK(launched, ErrorCode::Shape, "attention: no CUDA kernel for D = ", d.D);
  check_launch("attention_fwd", dev);
}

// Inputs: dOut, q, k, v, out, lse, then explicit positions; outputs: dq, dk, dv (any strides, last dim contiguous).
void attention_backward(const KernelCall& c) {
  const Dims d = check_dims(c, 1, "attentionBackward");
  const int dev = c.device.index;
  cudaStream_t stream = current_stream(dev);
  const Tables tables = rope_tables(c, 6, d, stream);

  const AttnTensor dout = rows_tensor(c.in[0], d.D), out = rows_tensor(c.in[4], d.D);
  const int64_t rows = static_cast<int64_t>(d.B) * d.H * d.N;
  StoragePtr delta = backend_for(c.device).allocate(c.device, static_cast<size_t>(rows) * sizeof(float));
  kernels::attention_bwd_delta<<<static_cast<unsigned>((rows + kernels::kAttnWarps - 1) / kernels::kAttnWarps),
                                 kernels::kAttnThreads, 0, stream>>>(dout, out, d.H, d.N, d.D, rows,
                                                                     static_cast<float*>(delta->data()));
  check_launch("attention_bwd_delta", dev);

  kernels::AttnBwdArgs a{};
  a.q = tensor(c.in[1]), a.k = tensor(c.in[2]), a.v = tensor(c.in[3]), a.dout = dout;
  a.lse = static_cast<const float*>(c.in[5].data);
  a.delta = static_cast<const float*>(delta->data());
  a.dq = out_tensor(c.out[0]), a.dk = out_tensor(c.out[1]), a.dv = out_tensor(c.out[2]);
  a.H = d.H, a.N = d.N, a.M = d.M, a.D = d.D;
  a.scale = static_cast<float>(c.attrs.num("scale"));
  a.scale_log2 = a.scale * kernels::kLog2e;
  a.q_rope = tables.q, a.k_rope = tables.k;
  a.vec = aligned16(a.q) && aligned16(a.k) && aligned16(a.v) && aligned16(a.dout);
  const unsigned pairs = static_cast<unsigned>(d.B * d.H);
  const int key_tiles = (d.M + kernels::kAttnRows - 1) / kernels::kAttnRows;
  const int query_tiles = (d.N + kernels::kAttnRows - 1) / kernels::kAttnRows;
  const bool hopper = a.vec && wgmma_attention_available(dev);
  bool launched = false;
  with_arith(c, [&](auto arith) {
    launched = kernels::attn_with_padded_d(d.D, [&](auto kd) {
      constexpr int kDp = decltype(kd)::value;
      using P = decltype(arith);
      const auto launch = [&](auto async) {
        constexpr bool kAsync = decltype(async)::value;
        constexpr int smem = kernels::kAttnBwdSmemBytes<kDp, P, kAsync>;
        allow_shared<kernels::attention_bwd_dkdv<kDp, P, kAsync>>(smem, dev, "attentionBackward", d.D);
        allow_shared<kernels::attention_bwd_dq<kDp, P, kAsync>>(smem, dev, "attentionBackward", d.D);
        // On a Hopper device dk/dv and dq run on wgmma where there are kernels for the width and arithmetic.
        if (!(hopper && launch_attention_bwd_dkdv_wgmma(a, static_cast<int>(pairs), P{}, stream, c.device))) {
          a.tiles = key_tiles;
          kernels::attention_bwd_dkdv<kDp, P, kAsync><<<static_cast<unsigned>(key_tiles) * pairs, kernels::kAttnThreads,
                                                        smem, stream>>>(a);
          check_launch("attention_bwd_dkdv", dev);
        }
        if (hopper && launch_attention_bwd_dq_wgmma(a, static_cast<int>(pairs), P{}, stream, c.device)) return;
        a.tiles = query_tiles;
        kernels::attention_bwd_dq<kDp, P, kAsync><<<static_cast<unsigned>(query_tiles) * pairs, kernels::kAttnThreads,
                                                    smem, stream>>>(a);
        check_launch("attention_bwd_dq", dev);
      };
      // Aligned rows may stream through cp.async (the next tiles while the current ones are computed on).
      if (a.vec && backward_async<kDp, P>(dev))
        launch(std::true_type{});
      else
        launch(std::false_type{});
    });
  });
  VL_CHECK(launched, ErrorCode::Shape, "attentionBackward: no CUDA kernel for D = ", d.D);
}

}  // namespace

VL_REGISTER_KERNEL(attention, CUDA, attention);
VL_REGISTER_KERNEL(attention_backward, CUDA, attention_backward);

}  // namespace cuda
}  // namespace vl
