// Scalar conversions between fp32 and the 16-bit float formats, with integer
// bit operations only, so the CPU and the CUDA kernels (which include this
// header too) agree bit for bit, NaN payloads included.
// Every function is `static inline` on purpose: this header is included by the
// per-ISA translation units (compiled with -mavx512f etc.), and internal
// linkage keeps the linker from picking an AVX-512 copy for generic callers.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define VL_HALF_FN static inline __host__ __device__
#else
#define VL_HALF_FN static inline
#endif

namespace vl {

VL_HALF_FN uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
VL_HALF_FN float bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// Round to nearest even; NaN stays NaN (quiet, sign kept), +-Inf stays Inf.
VL_HALF_FN uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
VL_HALF_FN float bf16_to_f32(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

// IEEE binary16, round to nearest even, subnormals kept, overflow to Inf.
VL_HALF_FN uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: Inf
  if (a < 0x38800000u) {
    // Result is subnormal (or zero): scale so the f16 subnormal step (2^-24) is one unit.
    if (a < 0x33000000u) return sign;  // below half the smallest subnormal
    const uint32_t exp = a >> 23;
    const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exp;  // 14 + (112 - exp): bits dropped below 2^-24
    uint32_t r = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  // Normal: rebias exponent (127 -> 15) and round the 13 dropped mantissa bits.
  uint32_t r = a - 0x38000000u;
  r += 0xfffu + ((r >> 13) & 1u);
  return static_cast<uint16_t>(sign | (r >> 13));
}

VL_HALF_FN float f16_to_f32(uint16_t h) {
  const uint32_t sign = (static_cast<uint32_t>(h) & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return bits_f32(sign | 0x7f800000u | (mant << 13));  // Inf / NaN
  if (exp == 0) {
    if (mant == 0) return bits_f32(sign);
    // Subnormal: normalize.
    uint32_t e = 113;  // 127 - 15 + 1
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --e;
    }
    return bits_f32(sign | (e << 23) | ((mant & 0x3ffu) << 13));
  }
  return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

// double -> float rounding to odd: a later round-to-nearest-even to bf16/f16
// then equals a single correct rounding of the double (no double rounding).
VL_HALF_FN float f64_to_f32_round_odd(double d) {
  float f = static_cast<float>(d);
  const double back = static_cast<double>(f);
  if (back == d || d != d) return f;  // exact, or NaN
  uint32_t u = f32_bits(f);
  const double ad = d < 0 ? -d : d;
  const double ab = back < 0 ? -back : back;
  if (ab > ad) u -= 1;  // rounded away from zero: step back toward zero
  return bits_f32(u | 1u);
}

}  // namespace vl
