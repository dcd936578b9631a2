#include "core/cpu_features.h"
#include "cpu/simd/isa.h"

namespace vl {

const IsaKernels& isa_kernels() {
  static const IsaKernels* k = [] {
    switch (active_isa()) {
      case CpuIsa::Avx512: return &kAvx512Kernels;
      case CpuIsa::Avx2: return &kAvx2Kernels;
      case CpuIsa::Scalar: break;
    }
    return &kScalarKernels;
  }();
  return *k;
}

}  // namespace vl
