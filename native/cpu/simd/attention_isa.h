// Fused attention tiles, compiled once per instruction set (see isa.h for
// why only plain C types cross this boundary). attention_tile.inc holds the
// algorithm; each attention_<isa>.cc supplies its vector type and includes it.
#pragma once
#include <cstdint>

namespace vl {

// One tile of queries of one (batch, head) against all M keys:
// out = softmax(rope(q)·rope(k)ᵀ · scale)·v, online softmax over key blocks.
struct AttnTile {
  const float* q;  // query row r at q + r * q_stride (D contiguous floats)
  const float* k;  // key row m at k + m * k_stride
  const float* v;  // value row m at v + m * v_stride
  int64_t q_stride, k_stride, v_stride;
  // RoPE tables, [row][D]: cos of each pair's angle twice, and (−sin, +sin);
  // q_cos/q_sin start at the tile's first query. Null: no rotation (k_cos is
  // null too when the keys were rotated beforehand, see pack_rows).
  const float *q_cos, *q_sin, *k_cos, *k_sin;
  float* out;  // output row r at out + r * out_stride (D floats)
  int64_t out_stride;
  float* lse;  // natural-log log-sum-exp per query row, or null
  int64_t rows, M, D;
  float scale;
  float* scratch;  // scratch_floats(D) floats, 64-byte aligned, private to the caller's thread
};

struct AttentionIsa {
  const char* name;
  int64_t tile_rows;  // most query rows one tile() call takes
  int64_t (*scratch_floats)(int64_t D);
  void (*tile)(const AttnTile* t);
  // dst row r (stride D) = src row r (stride src_stride) rotated by the tables'
  // row r (plain copy when cos is null).
  void (*pack_rows)(const float* src, int64_t src_stride, const float* cos, const float* sin, float* dst, int64_t rows,
                    int64_t D);
};

extern const AttentionIsa kScalarAttention;
extern const AttentionIsa kAvx2Attention;
extern const AttentionIsa kAvx512Attention;

// The table for the active ISA (see core/cpu_features.h).
const AttentionIsa& attention_isa();

}  // namespace vl
