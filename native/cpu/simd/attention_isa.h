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

// Backward of one tile of queries of one (batch, head) against all M keys
// (flash-attention-2 style): P = exp(scale·q̃·k̃ᵀ − lse) is recomputed block by
// block, dS = P ⊙ (dO·vᵀ − Δ) with Δ = rowsum(dO ⊙ O), then
// dv += Pᵀ·dO, dk̃ += scale·dSᵀ·q̃ (accumulated across tiles by the caller)
// and dq = Rᵀ·(scale·dS·k̃) (written, un-rotated).
struct AttnBwdTile {
  const float* q;     // query row r at q + r * q_stride (as passed to the forward, not rotated)
  const float* dout;  // incoming gradient row r at dout + r * dout_stride (D floats)
  const float* out;   // the forward's output row r at out + r * out_stride
  const float* lse;   // the forward's log-sum-exp of the tile's rows, natural log
  int64_t q_stride, dout_stride, out_stride;
  // Query RoPE tables at the tile's first row (see AttnTile), and the sines of
  // the transposed rotation (+sin, −sin) for un-rotating dq; all null: no rotation.
  const float *q_cos, *q_sin, *q_sin_t;
  const float* k;  // rotated key row m at k + m * kv_stride
  const float* v;  // value row m at v + m * kv_stride
  int64_t kv_stride;
  float* dq;  // dq row r at dq + r * dq_stride (D floats), written
  int64_t dq_stride;
  // Accumulators [M][acc_stride] (acc_stride >= D rounded up to a multiple of 16; the padding is scratch):
  // dk += the gradient of the rotated keys, dv += that of the values.
  float *dk, *dv;
  int64_t acc_stride;
  int64_t rows, M, D;
  float scale;
  float* scratch;  // bwd_scratch_floats(D) floats, 64-byte aligned, private to the caller's thread
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
  int64_t (*bwd_scratch_floats)(int64_t D);
  void (*bwd_tile)(const AttnBwdTile* t);
  // dst row r (stride dst_stride) = src row r (stride src_stride) rotated by the
  // tables' row r (stride D), times scale; cos null: scaled copy.
  void (*rotate_rows)(const float* src, int64_t src_stride, const float* cos, const float* sin, float scale, float* dst,
                      int64_t dst_stride, int64_t rows, int64_t D);
};

// bf16 forward tiles (AVX512_BF16; inference at bf16 precision). The tile
// takes q as AttnTile does; k and v point at a (batch, head)'s keys and
// values as pack_keys and pack_values left them: keys rotated, as bf16 rows
// [M][D]; values as words [ceil(M/2)][D], each the bf16 pair of rows 2j and
// 2j+1 of one channel (a zero row past an odd M). D even, at most max_d.
struct AttentionBf16Isa {
  int64_t tile_rows;
  int64_t max_d;
  int64_t (*scratch_floats)(int64_t D);
  void (*tile)(const AttnTile* t);
  void (*pack_keys)(const float* src, int64_t src_stride, const float* cos, const float* sin, uint16_t* dst, int64_t rows,
                    int64_t D);
  // rows even except at the end of the keys (the pairs of rows [0, rows)).
  void (*pack_values)(const float* src, int64_t src_stride, uint32_t* dst, int64_t rows, int64_t D);
};

extern const AttentionBf16Isa kAvx512Bf16Attention;

// The bf16 tiles where the CPU has AVX512_BF16 (and the active ISA is
// AVX-512, VLLAMA_DISABLE_AVX512BF16 unset), else null: f32 tiles then.
const AttentionBf16Isa* attention_bf16_isa();

extern const AttentionIsa kScalarAttention;
extern const AttentionIsa kAvx2Attention;
extern const AttentionIsa kAvx512Attention;

// The table for the active ISA (see core/cpu_features.h).
const AttentionIsa& attention_isa();

}  // namespace vl
