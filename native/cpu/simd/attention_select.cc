#include "core/cpu_features.h"
#include "cpu/simd/attention_isa.h"

namespace vl {

const AttentionIsa& attention_isa() {
  static const AttentionIsa* k = [] {
    switch (active_isa()) {
      case CpuIsa::Avx512: return &kAvx512Attention;
      case CpuIsa::Avx2: return &kAvx2Attention;
      case CpuIsa::Scalar: break;
    }
    return &kScalarAttention;
  }();
  return *k;
}

}  // namespace vl
