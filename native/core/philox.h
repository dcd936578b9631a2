// Philox4x32-10 counter-based generator (Salmon et al., SC'11). Each output
// depends only on (key, counter), so random tensors are identical for any
// thread count and on every device.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define VL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define VL_HOST_DEVICE static inline
#endif

namespace vl {

struct Philox4 {
  uint32_t v[4];
};

VL_HOST_DEVICE Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(M0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(M1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += W0;
    k1 += W1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Uniform in (0, 1]: never 0, so log() in Box-Muller stays finite.
VL_HOST_DEVICE double philox_unit_open0(uint32_t r) { return (static_cast<double>(r) + 1.0) * (1.0 / 4294967296.0); }
// Uniform in [0, 1) with 24 bits, exactly representable in fp32.
VL_HOST_DEVICE float philox_unit_f32(uint32_t r) { return static_cast<float>(r >> 8) * (1.0f / 16777216.0f); }

}  // namespace vl
