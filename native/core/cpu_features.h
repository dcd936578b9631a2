// Instruction-set detection for the CPU kernels. Kernels exist per ISA
// (scalar, AVX2+FMA+F16C, AVX-512 with BF16 where present); the best one the
// CPU and OS support is chosen once, at load. VLLAMA_CPU_ISA can force a lower one.
#pragma once
#include <string>
#include <vector>

namespace vl {

enum class CpuIsa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512bf16 = false;
};

const CpuFeatures& cpu_features();
std::vector<CpuIsa> supported_isas();
const char* isa_name(CpuIsa isa);
// The ISA in use: VLLAMA_CPU_ISA if set (must be supported), else the best supported.
CpuIsa active_isa();

}  // namespace vl
