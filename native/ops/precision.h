// The arithmetic of the tensor-core-shaped ops (GEMMs whose weights are not
// packed, attention). F32: full f32 products (the CPU's FMA kernels, CUDA's
// 3-pass bf16 split). BF16: operands rounded to bf16, products accumulated in
// f32 (the CPU's bf16 GEMM kernels, one tensor-core pass on CUDA): what
// mixed-precision training (autocast) asks for. F16: operands rounded to
// IEEE fp16 (nearest even, beyond 65504 to +-Inf, which is what loss scaling
// guards against), products accumulated in f32 (f16 tensor-core pass on CUDA;
// the f32 kernels on f16-rounded packed panels on the CPU). CPU attention
// keeps f32 for both. Kernels see it as the attr "wtype" (0 / 1 / 2). A
// packed weight fixes its precision when it is packed.
#pragma once
#include <string>

namespace vl {
namespace ops {

enum class MathPrecision { F32 = 0, BF16 = 1, F16 = 2 };

// "f32", "bf16" or "f16"; anything else is an error naming `op`.
MathPrecision parse_precision(const std::string& name, const char* op);

}  // namespace ops
}  // namespace vl
