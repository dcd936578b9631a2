// Fused AS2DRoPE attention (SPEC §1-§3): softmax(rope(q)·rope(k)ᵀ·scale)·v
// without materialising the N×M score matrix.
#pragma once
#include <cstdint>
#include <optional>

#include "core/tensor.h"

namespace vl {
namespace ops {

// Where tokens sit. Explicit: x and y, f32 [count] each. Otherwise a grid
// rule the kernel evaluates for token i: idx = i + index_offset,
// x = bias + pymod(idx, cols)·step, y = bias + floordiv(idx, cols)·step
// (floor semantics: a leading class token at idx −1 sits at x = (cols−1)·step, y = −step).
struct RopePositions {
  TensorPtr x, y;
  int64_t cols = 0;
  double step = 1.0, bias = 0.0;
  int64_t index_offset = 0;
};

struct AttentionOptions {
  std::optional<RopePositions> q_pos;
  std::optional<RopePositions> k_pos;  // absent: the queries' positions (needs M == N)
  bool rope = true;
  std::optional<double> scale;  // absent: 1/sqrt(D)
  bool return_lse = false;
};

struct AttentionResult {
  TensorPtr out;  // [B, N, heads·D], contiguous
  TensorPtr lse;  // [B, heads, N] natural-log log-sum-exp of the scaled scores, when asked for
};

// q [B, N, heads, D]; k, v [B, M, heads, D]; f32, any strides (views of a
// packed qkv projection need no copy when the last dim is contiguous).
// D is a multiple of 4 from 16 to 256.
AttentionResult attention(const TensorPtr& q, const TensorPtr& k, const TensorPtr& v, const AttentionOptions& options);

}  // namespace ops
}  // namespace vl
