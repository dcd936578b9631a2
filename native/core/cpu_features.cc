#include "core/cpu_features.h"

#include <cstdlib>
#include <string>

#include "core/error.h"

namespace vl {

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures c;
#if defined(__x86_64__) || defined(__i386__)
    // libgcc checks XCR0 too, so these are false where the OS does not save the registers.
    __builtin_cpu_init();
    c.avx2 = __builtin_cpu_supports("avx2");
    c.fma = __builtin_cpu_supports("fma");
    c.f16c = __builtin_cpu_supports("f16c");
    c.avx512f = __builtin_cpu_supports("avx512f");
    c.avx512bw = __builtin_cpu_supports("avx512bw");
    c.avx512vl = __builtin_cpu_supports("avx512vl");
    c.avx512dq = __builtin_cpu_supports("avx512dq");
    c.avx512bf16 = __builtin_cpu_supports("avx512bf16");
#endif
    return c;
  }();
  return f;
}

const char* isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Scalar: return "scalar";
    case CpuIsa::Avx2: return "avx2";
    case CpuIsa::Avx512: return "avx512";
  }
  return "scalar";
}

std::vector<CpuIsa> supported_isas() {
  const CpuFeatures& f = cpu_features();
  std::vector<CpuIsa> out{CpuIsa::Scalar};
  if (f.avx2 && f.fma && f.f16c) out.push_back(CpuIsa::Avx2);
  if (f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq) out.push_back(CpuIsa::Avx512);
  return out;
}

CpuIsa active_isa() {
  static const CpuIsa isa = [] {
    const std::vector<CpuIsa> ok = supported_isas();
    const char* env = std::getenv("VLLAMA_CPU_ISA");
    if (!env || !*env) return ok.back();
    std::string names;
    for (CpuIsa i : ok) {
      if (std::string(env) == isa_name(i)) return i;
      names += names.empty() ? "" : ", ";
      names += isa_name(i);
    }
    fail(ErrorCode::Argument, "VLLAMA_CPU_ISA='", env, "' is not available on this CPU: expected one of ", names);
  }();
  return isa;
}

}  // namespace vl
