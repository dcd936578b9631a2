#include <cstdlib>
#include <cstring>

#include "core/cpu_features.h"
#include "cpu/simd/gemm_isa.h"

namespace vl {

const GemmKernels& gemm_kernels() {
  static const GemmKernels* k = [] {
    switch (active_isa()) {
      case CpuIsa::Avx512: {
        // vdpbf16ps where the CPU has it; VLLAMA_DISABLE_AVX512BF16=1 keeps the
        // widening kernel (what CPUs without AVX512_BF16 run) testable here.
        const char* off = std::getenv("VLLAMA_DISABLE_AVX512BF16");
        if (!cpu_features().avx512bf16 || (off && std::strcmp(off, "1") == 0)) return &kGemmAvx512;
        static GemmKernels with_bf16 = kGemmAvx512;
        with_bf16.name = "avx512bf16";
        with_bf16.bf16 = kGemmAvx512Bf16Variant;
        return static_cast<const GemmKernels*>(&with_bf16);
      }
      case CpuIsa::Avx2: return &kGemmAvx2;
      case CpuIsa::Scalar: break;
    }
    return &kGemmScalar;
  }();
  return *k;
}

}  // namespace vl
