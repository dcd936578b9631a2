// Fused AS2DRoPE attention (SPEC §1-§3): softmax(rope(q)·rope(k)ᵀ·scale)·v
// without materialising the N×M score matrix.
#pragma once
#include <cstdint>
#include <optional>

#include "core/tensor.h"
#include "ops/precision.h"

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
  // BF16: q·kᵀ and p·v on bf16-rounded operands (CUDA); the CPU kernel keeps f32 either way.
  MathPrecision precision = MathPrecision::F32;
};

struct AttentionResult {
  TensorPtr out;  // [B, N, heads·D], contiguous
  TensorPtr lse;  // [B, heads, N] natural-log log-sum-exp of the scaled scores, when asked for
};

// q [B, N, heads, D]; k, v [B, M, heads, D]; f32, any strides (views of a
// packed qkv projection need no copy when the last dim is contiguous).
// D is a multiple of 4 from 16 to 256.
AttentionResult attention(const TensorPtr& q, const TensorPtr& k, const TensorPtr& v, const AttentionOptions& options);

// Where attention_backward writes the gradients.
enum class AttentionGradLayout {
  Separate,  // dq, dk, dv: new contiguous tensors
  PackedQKV,  // dq|dk|dv as views of one new [B, N, 3·heads·D] tensor ordered [q|k|v][head][d] (needs M == N)
  PackedKV,  // dk|dv as views of one new [B, M, 2·heads·D] tensor ordered [k|v][head][d]; dq new
};

struct AttentionBackwardOptions {
  // As for attention(), and the same values the forward ran with.
  std::optional<RopePositions> q_pos;
  std::optional<RopePositions> k_pos;
  bool rope = true;
  std::optional<double> scale;
  AttentionGradLayout layout = AttentionGradLayout::Separate;
  MathPrecision precision = MathPrecision::F32;
};

struct AttentionGrads {
  TensorPtr dq;  // [B, N, heads, D]
  TensorPtr dk, dv;  // [B, M, heads, D]
  TensorPtr packed;  // the tensor dq|dk|dv or dk|dv are views of, when a packed layout was asked for
};

// Gradients of attention() with respect to q, k (both before rotation) and v,
// given the incoming gradient dout [B, N, heads·D], the forward's inputs, its
// output out [B, N, heads·D] and its log-sum-exp lse [B, heads, N]. The
// softmax is recomputed tile by tile from lse (flash-attention-2 style); no
// N×M matrix is stored.
AttentionGrads attention_backward(const TensorPtr& dout, const TensorPtr& q, const TensorPtr& k, const TensorPtr& v,
                                  const TensorPtr& out, const TensorPtr& lse, const AttentionBackwardOptions& options);

}  // namespace ops
}  // namespace vl
