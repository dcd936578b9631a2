// What the AS2DRoPE kernels of every backend read the same way (SPEC §1):
// the token positions the launcher (ops/attention.cc) describes with
// attributes and inputs, and the frequencies f_i = theta^(-4i/D) in fp32.
// One definition, so the CPU and CUDA tables agree bit for bit.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/dispatch.h"

namespace vl {

// Explicit x, y coordinates, or the grid rule (x, y null): for token i,
// idx = i + offset, x = bias + pymod(idx, cols)·step, y = bias + floordiv(idx, cols)·step.
// Trivially copyable: CUDA kernels take it as a parameter.
struct RopePositionArgs {
  const float* x = nullptr;
  const float* y = nullptr;
  int64_t cols = 1, offset = 0;
  float step = 1.0f, bias = 0.0f;
};

// The positions ops/attention.cc passed under `prefix` ("q_" / "k_"); explicit
// coordinates are the next two inputs from *next_input on.
inline RopePositionArgs read_rope_positions(const KernelCall& c, const char* prefix, size_t* next_input) {
  const std::string p(prefix);
  RopePositionArgs out;
  if (c.attrs.integer(p + "explicit")) {
    out.x = static_cast<const float*>(c.in[(*next_input)++].data);
    out.y = static_cast<const float*>(c.in[(*next_input)++].data);
    return out;
  }
  out.cols = c.attrs.integer(p + "cols");
  out.offset = c.attrs.integer(p + "offset");
  out.step = static_cast<float>(c.attrs.num(p + "step"));
  out.bias = static_cast<float>(c.attrs.num(p + "bias"));
  return out;
}

// f_i = theta^(-4i/D), evaluated in fp32 as the reference does.
inline float rope_frequency(int64_t i, int64_t D) {
  const float e = static_cast<float>(4 * i) / static_cast<float>(D);
  return 1.0f / std::pow(10000.0f, e);
}

}  // namespace vl
