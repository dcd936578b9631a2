// The linear-algebra ops on CUDA, with the contracts of cpu/linalg.cc (the
// launchers in ops/linalg.cc have checked shapes and dtypes; "bias" /
// "residual" hold input indices or -1). Every op is one launch of the
// tensor-core GEMM of cuda/kernels/gemm.cuh (on compute capability 9.0, the
// linears and single-batch matmuls take the wgmma kernel of linalg_sm90.cu
// instead),
// which the test suite runs through the SIMT runner against references:
//   f32 weights: 3 bf16 passes (about 1e-5 relative to f32 GEMM), or 1 pass
//     when the op asks for bf16 arithmetic (attr "wtype" = 1: autocast);
//   bf16 / f16 packed weights: 1 pass, activations rounded to bf16 / fp16
//     as they load (f16: the fp16 tensor-core product).
// Operands the kernel cannot read in place (k not contiguous, e.g. matmul's
// B [K, N] without transposeB, or rows of x that no single stride
// describes) are first copied, contiguous, into scratch from the device's
// allocator by the copy kernel: a device-side transpose, never a host trip.
#include <atomic>
#include <climits>
#include <type_traits>
#include <vector>

#include "core/backend.h"
#include "core/dispatch.h"
#include "core/error.h"
#include "cuda/cuda_check.cuh"
#include "cuda/kernels/copy.cuh"
#include "cuda/kernels/gemm.cuh"
#include "cuda/linalg_sm90.cuh"
#include "cuda/runtime.cuh"
#include "ops/linalg.h"

namespace vl {
namespace cuda {
namespace {

namespace g = kernels::gemm;

struct Ctx {
  Device device;
  int dev;
  cudaStream_t stream;
  const char* op;
  // Scratch copies: handing them back right after queuing is safe because
  // everything on this device runs in stream order.
  std::vector<StoragePtr> scratch;
};

int as_int(int64_t v, const Ctx& c, const char* what) {
  VL_CHECK(v <= INT_MAX, ErrorCode::Shape, c.op, ": ", what, " of up to ", INT_MAX, " on CUDA, got ", v);
  return static_cast<int>(v);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

const float* optional_input(const KernelCall& c, const char* name) {
  const int64_t i = c.attrs.integer(name);
  return i < 0 ? nullptr : static_cast<const float*>(c.in[static_cast<size_t>(i)].data);
}

// A contiguous f32 copy of t in scratch. Dims of stride 0 (broadcast) are
// copied once and keep stride 0 in the result.
TensorArg contiguous_copy(const TensorArg& t, Ctx& c) {
  TensorArg src = t, out = t;
  int64_t n = 1;
  for (int d = 0; d < t.ndim; ++d) {
    if (t.strides[d] == 0) src.shape[d] = 1;
    n *= src.shape[d];
  }
  src.numel = n;
  src.contiguous = false;
  int64_t stride = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    out.strides[d] = src.shape[d] == 1 && t.shape[d] != 1 ? 0 : stride;
    stride *= src.shape[d];
  }
  out.contiguous = false;
  c.scratch.push_back(backend_for(c.device).allocate(c.device, static_cast<size_t>(n > 0 ? n : 1) * sizeof(float)));
  out.data = c.scratch.back()->data();
  kernels::copy_kernel<float, float><<<grid_for(n), kBlock, 0, c.stream>>>(src, static_cast<float*>(out.data), n);
  check_launch("copy", c.dev);
  return out;
}

// Dims [first, last) of t as rows of one stride (size-1 dims ignored): the
// stride, or -1 when no single stride describes them.
int64_t row_stride(const TensorArg& t, int first, int last, int64_t single) {
  int64_t ld = -1, next = 0;
  for (int d = last - 1; d >= first; --d) {
    if (t.shape[d] == 1) continue;
    if (ld < 0) {
      ld = t.strides[d];
    } else if (t.strides[d] != next) {
      return -1;
    }
    next = t.strides[d] * t.shape[d];
  }
  return ld < 0 ? single : ld;
}

template <typename TA, typename TB, int kPasses, bool kSwiGLU, bool kAsync, typename Ops, typename ASrc>
void launch_gemm(g::Params<TA, TB, ASrc> p, int64_t batches, const Ctx& c) {
  p.m_tiles = (p.M + g::kBM - 1) / g::kBM;
  p.n_tiles = (p.N + g::kBN - 1) / g::kBN;
  const int64_t blocks = g::grid_blocks(p, batches);
  if (blocks == 0) return;
  VL_CHECK(blocks <= INT_MAX, ErrorCode::Shape, c.op, ": up to ", INT_MAX, " output tiles of ", g::kBM, "x", g::kBN,
           " on CUDA, got ", blocks);
  auto kernel = g::gemm_kernel<TA, TB, kPasses, kSwiGLU, kAsync, ASrc, Ops>;
  constexpr int smem = g::kSmemBytes<TA, TB>;
  static std::atomic<uint64_t> granted{0};
  allow_dynamic_shared(kernel, smem, c.dev, granted);
  kernel<<<static_cast<unsigned>(blocks), g::kThreads, smem, c.stream>>>(p);
  check_launch("gemm_kernel", c.dev);
}

// cp.async when every 16-byte chunk of both operands is aligned, plain loads otherwise.
template <typename TA, typename TB, int kPasses, bool kSwiGLU, typename Ops = simt::Bf16Ops, typename ASrc>
void launch_gemm(const g::Params<TA, TB, ASrc>& p, int64_t batches, bool async, const Ctx& c) {
  if (async)
    launch_gemm<TA, TB, kPasses, kSwiGLU, true, Ops>(p, batches, c);
  else
    launch_gemm<TA, TB, kPasses, kSwiGLU, false, Ops>(p, batches, c);
}

// f32 x f32 operands in the arithmetic of "wtype" (ops::MathPrecision): 3
// bf16 passes for f32, 1 bf16 pass for bf16, 1 fp16 pass for f16. On Hopper,
// one batch of plain rows goes to the wgmma kernel (linalg_sm90.cu).
template <bool kSwiGLU, typename ASrc>
void launch_f32(const g::Params<float, float, ASrc>& p, int64_t batches, bool async, int64_t wtype, const Ctx& c) {
  if (wtype < 0 || wtype > 2) fail(ErrorCode::Runtime, c.op, ": unknown arithmetic precision ", wtype);
  if constexpr (std::is_same<ASrc, g::Rows>::value) {
    if (async && batches == 1 && wgmma_available(c.dev))
      return launch_gemm_wgmma_f32(p, kSwiGLU, static_cast<ops::MathPrecision>(wtype), c.stream, c.device);
  }
  switch (static_cast<ops::MathPrecision>(wtype)) {
    case ops::MathPrecision::F32: return launch_gemm<float, float, 3, kSwiGLU>(p, batches, async, c);
    case ops::MathPrecision::BF16: return launch_gemm<float, float, 1, kSwiGLU>(p, batches, async, c);
    case ops::MathPrecision::F16: return launch_gemm<float, float, 1, kSwiGLU, simt::F16Ops>(p, batches, async, c);
  }
}

bool rows_async(const void* base, int64_t ld, int elem) {
  return aligned16(base) && (ld * elem) % 16 == 0;
}

// linear / linear_packed / swiglu: in = {x [..., K], weight (f32 [N, K] view,
// or packed u8), [bias], [residual]}, out = {y [..., N]}.
void linear(const KernelCall& call) {
  Ctx c{call.device, call.device.index, current_stream(call.device.index), "linear", {}};
  TensorArg x = call.in[0];
  const TensorArg& w = call.in[1];
  const TensorArg& y = call.out[0];
  const int64_t K = x.shape[x.ndim - 1], N = y.shape[y.ndim - 1];
  // x as rows of one stride with contiguous k, or a contiguous copy.
  int64_t lda = row_stride(x, 0, x.ndim - 1, K);
  if (lda < 0 || (K > 1 && x.strides[x.ndim - 1] != 1)) {
    x = contiguous_copy(x, c);
    lda = K;
  }
  g::Params<float, float, g::Rows> p;  // the B type is set below
  p.a = static_cast<const float*>(x.data);
  p.a_src.ld = lda;
  p.c = static_cast<float*>(y.data);
  p.ldc = N;
  p.bias = optional_input(call, "bias");
  p.residual = optional_input(call, "residual");
  p.M = as_int(N ? y.numel / N : 0, c, "rows");
  p.K = as_int(K, c, "in_features");
  p.out_n = as_int(N, c, "out_features");
  const bool a_async = rows_async(p.a, lda, 4);
  if (!call.attrs.integer("packed")) {
    TensorArg wt = w;
    if (K > 1 && wt.strides[1] != 1) wt = contiguous_copy(wt, c);
    p.b = static_cast<const float*>(wt.data);
    p.b_src.ld = wt.strides[0];
    p.N = p.out_n;
    p.b_k = p.K;
    launch_f32<false>(p, 1, a_async && rows_async(p.b, p.b_src.ld, 4), call.attrs.integer("wtype"), c);
    return;
  }
  // The launcher checked these against the packed weight's description.
  const bool swiglu = call.attrs.integer("swiglu") != 0;
  const auto wtype = static_cast<ops::MathPrecision>(call.attrs.integer("wtype"));
  const bool half = wtype != ops::MathPrecision::F32;
  const int64_t kpad = ops::cuda_packed_kpad(K), rows = ops::cuda_packed_rows(N, swiglu);
  if (call.attrs.integer("n") != N || call.attrs.integer("k") != K || call.attrs.integer("kblock") != kpad ||
      w.numel != ops::cuda_packed_bytes(N, K, swiglu, half))
    fail(ErrorCode::Runtime, "linear: the packed weight does not match the CUDA kernels' layout");
  p.N = as_int(rows, c, "packed rows");
  p.b_src.ld = kpad;
  p.b_k = as_int(kpad, c, "packed row length");
  if (!half) {
    p.b = static_cast<const float*>(w.data);
    const bool async = a_async && aligned16(w.data);
    const auto f32 = static_cast<int64_t>(ops::MathPrecision::F32);
    if (swiglu)
      launch_f32<true>(p, 1, async, f32, c);
    else
      launch_f32<false>(p, 1, async, f32, c);
    return;
  }
  const g::Params<float, uint16_t, g::Rows> q = g::with_b(p, static_cast<const uint16_t*>(w.data), p.b_src.ld, p.b_k);
  const bool async = a_async && aligned16(w.data);
  if (async && wgmma_available(c.dev)) {
    // Hopper: the same product on wgmma (linalg_sm90.cu).
    launch_gemm_wgmma(q, swiglu, wtype == ops::MathPrecision::F16, c.stream, c.dev);
    return;
  }
  // 16-bit panels: bf16 bits, or fp16 bits multiplied on the f16 tensor cores.
  const auto launch16 = [&](auto ops) {
    using Ops = decltype(ops);
    if (swiglu)
      launch_gemm<float, uint16_t, 1, true, Ops>(q, 1, async, c);
    else
      launch_gemm<float, uint16_t, 1, false, Ops>(q, 1, async, c);
  };
  if (wtype == ops::MathPrecision::F16)
    launch16(simt::F16Ops{});
  else
    launch16(simt::Bf16Ops{});
}

// in = {a [batch..., M, K], b [batch..., N, K]} (batch dims already broadcast
// to the output's, stride 0 where repeated), out = {[batch..., M, N]}.
void matmul(const KernelCall& call) {
  Ctx c{call.device, call.device.index, current_stream(call.device.index), "matmul", {}};
  TensorArg a = call.in[0], b = call.in[1];
  const TensorArg& y = call.out[0];
  const int nd = y.ndim, nb = nd - 2;
  const int64_t M = y.shape[nd - 2], N = y.shape[nd - 1], K = a.shape[nd - 1];
  // k must be contiguous (transposeB = false gives B with k along a stride: transpose it here).
  if (K > 1 && a.strides[nd - 1] != 1) a = contiguous_copy(a, c);
  if (K > 1 && b.strides[nd - 1] != 1) b = contiguous_copy(b, c);
  g::Params<float, float, g::Rows> p;
  p.a = static_cast<const float*>(a.data);
  p.b = static_cast<const float*>(b.data);
  p.b_src.ld = b.strides[nd - 2];
  p.c = static_cast<float*>(y.data);
  p.ldc = N;
  p.N = p.out_n = as_int(N, c, "N");
  p.K = p.b_k = as_int(K, c, "K");
  int64_t batches = 1;
  for (int d = 0; d < nb; ++d) batches *= y.shape[d];
  bool b_shared = true;
  for (int d = 0; d < nb; ++d) b_shared = b_shared && (b.strides[d] == 0 || b.shape[d] == 1);
  const int64_t rows_ld = b_shared ? row_stride(a, 0, nd - 1, K) : -1;
  if (rows_ld >= 0) {
    // One B for every batch and the rows of a under one stride: a single GEMM
    // of batches * M rows (C's rows follow each other), no tiles lost to small M.
    p.M = as_int(batches * M, c, "rows (batch x M)");
    p.a_src.ld = rows_ld;
    batches = 1;
  } else {
    VL_CHECK(nb <= g::kMaxBatchDims, ErrorCode::Shape, "matmul: up to ", g::kMaxBatchDims, " batch dims on CUDA, got ", nb);
    p.M = as_int(M, c, "M");
    p.a_src.ld = a.strides[nd - 2];
    p.batch.dims = nb;
    for (int d = 0; d < nb; ++d) {
      p.batch.shape[d] = y.shape[d];
      p.batch.a[d] = y.shape[d] == 1 ? 0 : a.strides[d];
      p.batch.b[d] = y.shape[d] == 1 ? 0 : b.strides[d];
    }
    p.batch.c = M * N;
  }
  bool async = rows_async(p.a, p.a_src.ld, 4) && rows_async(p.b, p.b_src.ld, 4);
  for (int d = 0; d < p.batch.dims; ++d) async = async && p.batch.a[d] % 4 == 0 && p.batch.b[d] % 4 == 0;
  launch_f32<false>(p, batches, async, call.attrs.integer("wtype"), c);
}

// in = {x [B, C, H, W], w [O, C*p*p] contiguous, [bias]}, out = {[B, (H/p)*(W/p), O]}.
// A[(b, gy, gx), (c, ky, kx)] = x[b, c, gy*p + ky, gx*p + kx] is gathered by the
// kernel's tile loads: no im2col copy.
void conv_patch(const KernelCall& call) {
  Ctx c{call.device, call.device.index, current_stream(call.device.index), "convPatch", {}};
  const TensorArg& x = call.in[0];
  const TensorArg& w = call.in[1];
  const TensorArg& y = call.out[0];
  const int64_t pz = call.attrs.integer("patch");
  const int64_t gh = x.shape[2] / pz, gw = x.shape[3] / pz;
  g::Params<float, float, g::Patches> p;
  p.a = static_cast<const float*>(x.data);
  p.a_src.sb = x.strides[0], p.a_src.sc = x.strides[1], p.a_src.sh = x.strides[2], p.a_src.sw = x.strides[3];
  p.a_src.p = as_int(pz, c, "patch");
  p.a_src.gw = as_int(gw, c, "patches per row");
  p.a_src.cells = as_int(gh * gw, c, "patches per image");
  p.b = static_cast<const float*>(w.data);
  p.b_src.ld = w.shape[1];
  p.c = static_cast<float*>(y.data);
  p.ldc = w.shape[0];
  p.bias = optional_input(call, "bias");
  p.M = as_int(x.shape[0] * gh * gw, c, "patches");
  p.N = p.out_n = as_int(w.shape[0], c, "out_channels");
  p.K = p.b_k = as_int(w.shape[1], c, "C * patch * patch");
  // Runs of 4 k (one chunk) are contiguous and aligned in x.
  const bool async = aligned16(x.data) && x.strides[3] == 1 && pz % 4 == 0 && x.strides[0] % 4 == 0 &&
                     x.strides[1] % 4 == 0 && x.strides[2] % 4 == 0 && rows_async(p.b, p.b_src.ld, 4);
  launch_f32<false>(p, 1, async, call.attrs.integer("wtype"), c);
}

// in = {w [N, K] f32} or {w1, w2 [H, K] f32 (one k stride)}, out = {u8: the
// packed rows of ops/linalg.h}.
void pack(const KernelCall& call, bool swiglu) {
  Ctx c{call.device, call.device.index, current_stream(call.device.index), swiglu ? "packSwiGLU" : "packLinear", {}};
  const TensorArg& w1 = call.in[0];
  const TensorArg& w2 = call.in[swiglu ? 1 : 0];
  if (w1.strides[1] != w2.strides[1]) fail(ErrorCode::Runtime, "pack_swiglu: W1 and W2 need the same k stride");
  const int64_t n = call.attrs.integer("n"), k = call.attrs.integer("k");
  const auto wtype = static_cast<ops::MathPrecision>(call.attrs.integer("wtype"));
  const int64_t kpad = ops::cuda_packed_kpad(k), rows = ops::cuda_packed_rows(n, swiglu);
  if (call.out[0].numel != ops::cuda_packed_bytes(n, k, swiglu, wtype != ops::MathPrecision::F32))
    fail(ErrorCode::Runtime, c.op, ": the packed tensor does not match the CUDA kernels' layout");
  const int n32 = as_int(n, c, "rows"), k32 = as_int(kpad, c, "in_features");
  const unsigned blocks = grid_for(rows * kpad);
  const float* a = static_cast<const float*>(w1.data);
  const float* b = static_cast<const float*>(w2.data);
  uint16_t* half = static_cast<uint16_t*>(call.out[0].data);
  if (wtype == ops::MathPrecision::BF16)
    g::pack_weight_rows<uint16_t><<<blocks, kBlock, 0, c.stream>>>(a, b, w1.strides[0], w2.strides[0], w1.strides[1], n32,
                                                                   static_cast<int>(k), rows, k32, swiglu, half);
  else if (wtype == ops::MathPrecision::F16)
    g::pack_weight_rows<uint16_t, simt::F16Ops><<<blocks, kBlock, 0, c.stream>>>(
        a, b, w1.strides[0], w2.strides[0], w1.strides[1], n32, static_cast<int>(k), rows, k32, swiglu, half);
  else
    g::pack_weight_rows<float><<<blocks, kBlock, 0, c.stream>>>(a, b, w1.strides[0], w2.strides[0], w1.strides[1], n32,
                                                                static_cast<int>(k), rows, k32, swiglu,
                                                                static_cast<float*>(call.out[0].data));
  check_launch("pack_weight_rows", c.dev);
}

void pack_linear(const KernelCall& c) { pack(c, false); }
void pack_swiglu(const KernelCall& c) { pack(c, true); }

}  // namespace

VL_REGISTER_KERNEL(linear, CUDA, linear);
VL_REGISTER_KERNEL(matmul, CUDA, matmul);
VL_REGISTER_KERNEL(conv_patch, CUDA, conv_patch);
VL_REGISTER_KERNEL(pack_linear, CUDA, pack_linear);
VL_REGISTER_KERNEL(pack_swiglu, CUDA, pack_swiglu);

}  // namespace cuda
}  // namespace vl
