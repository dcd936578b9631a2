#include <cstdlib>
#include <cstring>

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

const AttentionBf16Isa* attention_bf16_isa() {
  static const AttentionBf16Isa* k = []() -> const AttentionBf16Isa* {
    const char* off = std::getenv("VLLAMA_DISABLE_AVX512BF16");
    if (active_isa() != CpuIsa::Avx512 || !cpu_features().avx512bf16 || (off && std::strcmp(off, "1") == 0)) return nullptr;
    return &kAvx512Bf16Attention;
  }();
  return k;
}

}  // namespace vl
