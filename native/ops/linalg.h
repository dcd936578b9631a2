// Linear algebra launchers: linear layers (plain, packed, SwiGLU), batched
// matmul and the patch-embedding convolution. All run as GEMMs: on the CPU
// cpu/gemm, on CUDA the tensor-core kernel of cuda/kernels/gemm.cuh. Inputs
// are read through their strides, outputs are new contiguous f32 tensors.
#pragma once
#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "ops/precision.h"

namespace vl {
namespace ops {

// What a packed weight tensor (u8 bytes of GEMM panels) means. The bytes are
// only valid for the kernels (layout) and K blocking they were packed with.
struct PackedWeight {
  TensorPtr data;       // u8 [bytes], contiguous
  int64_t n = 0;        // output features (SwiGLU: hidden size)
  int64_t k = 0;        // input features
  DType dtype = DType::F32;  // precision of the packed panels: F32, BF16 or F16
  std::string layout;   // kernel family that packed it, e.g. "avx512", or "cuda"
  int64_t kblock = 0;   // CPU: the K block; CUDA: the padded row length
  bool swiglu = false;
};

// The layout name of this process's CPU kernels (what pack_* records for CPU tensors).
std::string packed_layout();

// Packed weights on CUDA (layout "cuda"), for cuda/kernels/gemm.cuh: rows of
// cuda_packed_kpad(K) values, zero past K: f32, or bf16 / fp16 with each
// 16-wide k group in the order the kernel's f32 fragments use (gemm::packed_k). A
// linear weight has N rows; a SwiGLU weight 2 * round_up(H, 8), W1 and W2
// interleaved in groups of 8 rows (the mma's n tile), so one GEMM computes
// both products of a column in the same registers.
constexpr const char* kCudaPackedLayout = "cuda";
inline int64_t cuda_packed_kpad(int64_t k) { return (k + 15) / 16 * 16; }
inline int64_t cuda_packed_rows(int64_t n, bool swiglu) { return swiglu ? 2 * ((n + 7) / 8 * 8) : n; }
// Bytes of such a weight: 4 per value (f32), 2 for bf16 or fp16 (half).
inline int64_t cuda_packed_bytes(int64_t n, int64_t k, bool swiglu, bool half) {
  return cuda_packed_rows(n, swiglu) * cuda_packed_kpad(k) * (half ? 2 : 4);
}

// w: [N, K] (f32 or bf16, any strides). dtype: F32, BF16 or F16 panels. On
// the CPU, F16 panels are the f32 layout holding fp16-rounded values (this
// CPU has no fp16 arithmetic; the products then equal an fp16 tensor-core
// pass with f32 accumulation up to summation order); on CUDA they are fp16.
PackedWeight pack_linear(const TensorPtr& w, DType dtype);
// w1, w2: [H, K]; SwiGLU panels interleave them so one pass computes both.
PackedWeight pack_swiglu(const TensorPtr& w1, const TensorPtr& w2, DType dtype);

// x [..., K] f32 (any strides), w [N, K] f32 -> [..., N] = x . w^T (+ bias[N]) (+ residual[..., N]).
// bias / residual may be null.
TensorPtr linear(const TensorPtr& x, const TensorPtr& w, const TensorPtr& bias, const TensorPtr& residual,
                 MathPrecision precision = MathPrecision::F32);
// With bf16 panels on the CPU, x may be bf16: the GEMM rounds x to bf16
// anyway, so it is the same product as on x's f32 values, with half the bytes
// to read (the CPU GEMM streams activations from memory).
TensorPtr linear_packed(const TensorPtr& x, const PackedWeight& w, const TensorPtr& bias, const TensorPtr& residual);
// silu(x . W1^T) * (x . W2^T) from pack_swiglu's weight -> [..., H] (+ residual).
// out_dtype BF16 (bf16 panels on the CPU, no residual): the result rounded to
// bf16 as its tiles are stored, for a bf16 down projection to read.
TensorPtr swiglu(const TensorPtr& x, const PackedWeight& w, const TensorPtr& residual, DType out_dtype = DType::F32);

// a [..., M, K] . b [..., K, N] (transpose_b: b is [..., N, K]) with numpy
// broadcasting of the batch dims -> [..., M, N].
TensorPtr matmul(const TensorPtr& a, const TensorPtr& b, bool transpose_b,
                 MathPrecision precision = MathPrecision::F32);

// Conv2d with stride = kernel = patch: x [B, C, H, W], w [O, C, p, p],
// bias [O] (may be null) -> tokens [B, (H/p)*(W/p), O], grid row-major.
TensorPtr conv_patch(const TensorPtr& x, const TensorPtr& w, const TensorPtr& bias, int64_t patch,
                     MathPrecision precision = MathPrecision::F32);

}  // namespace ops
}  // namespace vl
