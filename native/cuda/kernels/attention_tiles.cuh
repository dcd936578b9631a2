// The building blocks of the fused attention kernels, shared by the
// mma.sync forward and backward (attention.cuh, whose header describes the
// design) and the Hopper forward (attention_wgmma.cuh): tile loading with
// RoPE, the hi/lo split, mma fragments, the online softmax step and the
// forward's epilogue. No kernels here: a file built for another
// architecture includes this without defining attention.cuh's kernels again.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/half.h"
#include "core/rope_args.h"
#include "cuda/simt.cuh"

namespace vl {
namespace cuda {
namespace kernels {

constexpr int kAttnWarps = 4, kAttnThreads = 32 * kAttnWarps, kAttnRows = 16 * kAttnWarps;
constexpr int kAttnMaxD = 128;
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

// Keys (or queries) streamed per step next to a block's 64 own rows: smaller
// for wide heads, so accumulators, fragments and shared memory stay in budget.
// (Variable templates rather than constexpr functions: nvcc allows them in device code.)
template <int kDp>
constexpr int kAttnStreamRows = kDp <= 64 ? 64 : 32;
template <int kDp>
constexpr int kAttnSmemStride = kDp + 8;
// The widths a kernel is instantiated for: D rounded up to 16.
constexpr int attn_padded_d(int D) { return (D + 15) / 16 * 16; }

// Calls f(std::integral_constant<int, kDp>{}) for D's padded width; false
// when D is outside 1..kAttnMaxD.
template <typename F>
bool attn_with_padded_d(int D, F f) {
  switch (D < 1 || D > kAttnMaxD ? 0 : attn_padded_d(D)) {
    case 16: return f(std::integral_constant<int, 16>{}), true;
    case 32: return f(std::integral_constant<int, 32>{}), true;
    case 48: return f(std::integral_constant<int, 48>{}), true;
    case 64: return f(std::integral_constant<int, 64>{}), true;
    case 80: return f(std::integral_constant<int, 80>{}), true;
    case 96: return f(std::integral_constant<int, 96>{}), true;
    case 112: return f(std::integral_constant<int, 112>{}), true;
    case 128: return f(std::integral_constant<int, 128>{}), true;
    default: return false;
  }
}

// One of q, k, v, dq, ... as [B, T, heads, D] with element strides (last dim contiguous).
struct AttnTensor {
  const float* data;
  int64_t sb, st, sh;
};
struct AttnOutTensor {
  float* data;
  int64_t sb, st, sh;
};

// Where tokens sit (ops/attention.h RopePositions): explicit x, y, or the grid rule.
using AttnPositions = RopePositionArgs;

// f_i = theta^(-4i/D) for i < D/4, computed on the host as the CPU tables
// (cpu/attention_rope.cc) compute them, so angles agree bit for bit.
struct AttnFreqs {
  float f[kAttnMaxD / 4];
};
inline AttnFreqs attn_freqs(int D) {
  AttnFreqs r{};
  for (int i = 0; i < D / 4 && i < kAttnMaxD / 4; ++i) r.f[i] = rope_frequency(i, D);
  return r;
}

// The multiply and add of positions and angles rounded separately (no FMA
// contraction), as the CPU tables compute them.
VL_DEVICE float attn_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
VL_DEVICE float attn_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
VL_DEVICE int64_t attn_floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// Four consecutive floats; one 16-byte load when `vec` says rows are aligned.
VL_DEVICE void attn_load4(const float* p, bool vec, float v[4]) {
#if defined(__CUDACC__)
  if (vec) {
    const float4 f = *reinterpret_cast<const float4*>(p);
    v[0] = f.x, v[1] = f.y, v[2] = f.z, v[3] = f.w;
    return;
  }
#endif
  for (int i = 0; i < 4; ++i) v[i] = p[i];
}

// The arithmetic of the products: kParts 16-bit parts per f32 operand (2:
// the bf16 hi/lo split, 1: one rounding) in the format of Ops.
template <int kParts_, typename Ops_>
struct AttnArith {
  static constexpr int kParts = kParts_;
  using Ops = Ops_;
  static_assert(kParts == 1 || std::is_same<Ops, simt::Bf16Ops>::value, "the hi/lo split is bf16");
};
using AttnSplit = AttnArith<2, simt::Bf16Ops>;  // f32 arithmetic
using AttnBf16 = AttnArith<1, simt::Bf16Ops>;
using AttnF16 = AttnArith<1, simt::F16Ops>;

// A pair of floats (a in the low half) split as hi = P::Ops::pack(a, b) and
// (P::kParts == 2) lo = bf16x2 of what hi misses; one cvt each on the GPU.
template <typename P>
VL_DEVICE void attn_split2(float a, float b, uint32_t& hi, uint32_t& lo) {
  hi = P::Ops::pack(a, b);
  if constexpr (P::kParts == 2) lo = simt::pack_bf16x2(a - bits_f32(hi << 16), b - bits_f32(hi & 0xffff0000u));
}

// 4 bf16 to shared memory in one 8-byte store.
VL_DEVICE void attn_store4(uint16_t* dst, uint32_t a, uint32_t b) {
#if defined(__CUDACC__)
  *reinterpret_cast<uint2*>(dst) = make_uint2(a, b);
#else
  std::memcpy(dst, &a, 4);
  std::memcpy(dst + 2, &b, 4);
#endif
}

// A shared-memory tile of kRows rows, bf16 hi then (P::kParts == 2) lo, rows kS apart.
template <int kRows, int kDp, typename P>
struct AttnTile {
  static constexpr int kS = kAttnSmemStride<kDp>, kPart = kRows * kS, kElems = P::kParts * kPart;
  uint16_t* s;
};

// Rows from `row` on of a RoPE table, or null when there is none.
VL_DEVICE const float* attn_table_rows(const float* table, int row, int D) {
  return table ? table + static_cast<int64_t>(row) * D : nullptr;
}

// Four consecutive channels c..c+3 of a row: loaded (zeros past `rows` or
// D), then turned by the row's RoPE table entries when a table is given:
// pair (a, b) by φ to (a cos φ - b sin φ, a sin φ + b cos φ), x then y.
VL_DEVICE void attn_load_rotated4(const float* src, int64_t stride, int r, int c, int rows, int D, const float* table,
                                  bool vec, float v[4]) {
  v[0] = v[1] = v[2] = v[3] = 0.0f;
  if (r >= rows || c >= D) return;
  attn_load4(src + r * stride + c, vec, v);
  if (!table) return;
  float cs[4];
  attn_load4(table + static_cast<int64_t>(r) * D + c, true, cs);
  for (int p = 0; p < 2; ++p) {
    const float co = cs[2 * p], si = cs[2 * p + 1], a = v[2 * p], b = v[2 * p + 1];
    v[2 * p] = a * co - b * si;
    v[2 * p + 1] = a * si + b * co;
  }
}

// Block-cooperative (kThreads threads): rows [0, kRows) of the tile from
// `rows` valid rows at src (row stride `stride`, D columns), rotated by the
// table's rows when a table is given, split into hi/lo. Rows past `rows`
// and columns past D are zero.
template <int kRows, int kDp, typename P, int kThreads = kAttnThreads>
VL_DEVICE void attn_fill(AttnTile<kRows, kDp, P> tile, const float* src, int64_t stride, int rows, int D,
                         const float* table, bool vec) {
  using T = AttnTile<kRows, kDp, P>;
  constexpr int kGroups = kDp / 4;
  for (int i = simt::thread_x(); i < kRows * kGroups; i += kThreads) {
    const int r = i / kGroups, c = 4 * (i % kGroups);
    float v[4];
    attn_load_rotated4(src, stride, r, c, rows, D, table, vec, v);
    uint32_t h[2], l[2];
    attn_split2<P>(v[0], v[1], h[0], l[0]);
    attn_split2<P>(v[2], v[3], h[1], l[1]);
    uint16_t* dst = tile.s + r * T::kS + c;
    attn_store4(dst, h[0], h[1]);
    if constexpr (P::kParts == 2) attn_store4(dst + T::kPart, l[0], l[1]);
  }
}

// Block-cooperative (kThreads threads): cp.async copies of rows [0, kRows) x columns [0, kDp)
// of src (row stride `stride`, 16-byte aligned rows) into an f32 staging
// tile (rows kDp floats apart); rows past `rows` and columns past D are
// zero-filled. attn_fill then converts the staging tile (it is its `src`).
template <int kRows, int kDp, int kThreads = kAttnThreads>
VL_DEVICE void attn_stage(float* stage, const float* src, int64_t stride, int rows, int D) {
  constexpr int kGroups = kDp / 4;
  for (int i = simt::thread_x(); i < kRows * kGroups; i += kThreads) {
    const int r = i / kGroups, c = 4 * (i % kGroups);
    const bool in = r < rows && c < D;
    simt::cp_async_16(stage + r * kDp + c, in ? src + r * stride + c : src, in ? 16 : 0);
  }
}

// acc += a·b on tensor cores with the hi/lo split: lo·hi + hi·lo first, the large term last.
template <typename P>
VL_DEVICE void attn_mma(float acc[4], const uint32_t (&a)[P::kParts][4], const uint32_t (&b)[P::kParts][2]) {
  if constexpr (P::kParts == 2) {
    P::Ops::mma(acc, a[1], b[0]);
    P::Ops::mma(acc, a[0], b[1]);
  }
  P::Ops::mma(acc, a[0], b[0]);
}

// The A fragment of a warp's 16 rows from row0 of a tile, columns [16 ks, 16 ks + 16).
template <int kRows, int kDp, typename P>
VL_DEVICE void attn_a_frag(const AttnTile<kRows, kDp, P>& tile, int row0, int ks, uint32_t (&a)[P::kParts][4]) {
  using T = AttnTile<kRows, kDp, P>;
  const int lane = simt::lane();
  const uint16_t* p = tile.s + (row0 + (lane & 7) + ((lane >> 3) & 1) * 8) * T::kS + 16 * ks + (lane >> 4) * 8;
  for (int l = 0; l < P::kParts; ++l) simt::ldmatrix_x4(a[l], p + l * T::kPart);
}

// acc[16 x kRows] += A·Bᵀ for one warp: B is the tile (its rows are the
// output columns, the kDp columns the reduction); A's fragment for k-step ks
// comes from a_frag(ks, a).
template <int kRows, int kDp, typename P, typename AFrag>
VL_DEVICE void attn_mma_nt(float (&acc)[kRows / 8][4], AFrag a_frag, const AttnTile<kRows, kDp, P>& b) {
  using T = AttnTile<kRows, kDp, P>;
  const int lane = simt::lane();
  for (int ks = 0; ks < kDp / 16; ++ks) {
    uint32_t a[P::kParts][4];
    a_frag(ks, a);
    for (int np = 0; np < kRows / 16; ++np) {
      // Matrices: rows 0-7 of columns 0-7, 8-15; then rows 8-15 of the same.
      const uint16_t* p = b.s + (16 * np + (lane & 7) + ((lane >> 4) << 3)) * T::kS + 16 * ks + ((lane >> 3) & 1) * 8;
      uint32_t r[P::kParts][4], b0[P::kParts][2], b1[P::kParts][2];
      for (int l = 0; l < P::kParts; ++l) {
        simt::ldmatrix_x4(r[l], p + l * T::kPart);
        b0[l][0] = r[l][0], b0[l][1] = r[l][1], b1[l][0] = r[l][2], b1[l][1] = r[l][3];
      }
      attn_mma<P>(acc[2 * np], a, b0);
      attn_mma<P>(acc[2 * np + 1], a, b1);
    }
  }
}

// The A fragments of a 16 x kRows accumulator (scores, probabilities) for
// the next product, split into hi/lo in registers: the accumulator's 16x8
// tiles 2kk and 2kk+1 are A's k-step kk (flash-attention-2's register reuse).
template <int kRows, typename P>
VL_DEVICE void attn_acc_to_a(const float (&acc)[kRows / 8][4], uint32_t (&a)[kRows / 16][P::kParts][4]) {
  for (int kk = 0; kk < kRows / 16; ++kk) {
    uint32_t lo[4];
    attn_split2<P>(acc[2 * kk][0], acc[2 * kk][1], a[kk][0][0], lo[0]);
    attn_split2<P>(acc[2 * kk][2], acc[2 * kk][3], a[kk][0][1], lo[1]);
    attn_split2<P>(acc[2 * kk + 1][0], acc[2 * kk + 1][1], a[kk][0][2], lo[2]);
    attn_split2<P>(acc[2 * kk + 1][2], acc[2 * kk + 1][3], a[kk][0][3], lo[3]);
    if constexpr (P::kParts == 2)
      for (int i = 0; i < 4; ++i) a[kk][1][i] = lo[i];
  }
}

// acc[16 x kDp] += A·B for one warp: A 16 x kRows as fragments, B the tile
// (kRows rows of kDp columns, row-major), read transposed by ldmatrix.trans.
template <int kRows, int kDp, typename P>
VL_DEVICE void attn_mma_nn(float (&acc)[kDp / 8][4], const uint32_t (&a)[kRows / 16][P::kParts][4],
                           const AttnTile<kRows, kDp, P>& b) {
  using T = AttnTile<kRows, kDp, P>;
  const int lane = simt::lane();
  for (int kk = 0; kk < kRows / 16; ++kk) {
    for (int np = 0; np < kDp / 16; ++np) {
      // Matrices: rows 0-7 and 8-15 of columns 0-7, then of columns 8-15.
      const uint16_t* p = b.s + (16 * kk + (lane & 7) + ((lane >> 3) & 1) * 8) * T::kS + 16 * np + (lane >> 4) * 8;
      uint32_t r[P::kParts][4], b0[P::kParts][2], b1[P::kParts][2];
      for (int l = 0; l < P::kParts; ++l) {
        simt::ldmatrix_x4_trans(r[l], p + l * T::kPart);
        b0[l][0] = r[l][0], b0[l][1] = r[l][1], b1[l][0] = r[l][2], b1[l][1] = r[l][3];
      }
      attn_mma<P>(acc[2 * np], a[kk], b0);
      attn_mma<P>(acc[2 * np + 1], a[kk], b1);
    }
  }
}

// Two consecutive floats; one 8-byte store when `vec` says rows and the base are 8-byte aligned.
VL_DEVICE void attn_store2(float* p, float a, float b, bool vec) {
#if defined(__CUDACC__)
  if (vec) {
    *reinterpret_cast<float2*>(p) = make_float2(a, b);
    return;
  }
#endif
  p[0] = a, p[1] = b;
}

// Writes a warp's 16 x kDp accumulator (rows row0.., columns < D) times
// `scale`, rotated back by the table (sines negated) when one is given. A
// lane's two columns 2t, 2t+1 of each 8-wide tile are one RoPE pair.
template <int kDp>
VL_DEVICE void attn_store_rows(const float (&acc)[kDp / 8][4], float* base, int64_t stride, int row0, int rows, int D,
                               float scale, const float* table) {
  const bool vec = reinterpret_cast<uintptr_t>(base) % 8 == 0 && stride % 2 == 0;
  const int g = simt::lane() >> 2, t = simt::lane() & 3;
  for (int half = 0; half < 2; ++half) {
    const int r = row0 + g + 8 * half;
    if (r >= rows) continue;
    for (int j = 0; j < kDp / 8; ++j) {
      const int c = 8 * j + 2 * t;
      if (c >= D) continue;
      float a = acc[j][2 * half] * scale, b = acc[j][2 * half + 1] * scale;
      if (table) {
        // Pair c/2: x (even pair) or y (odd) of group c/4.
        const float* cs = table + static_cast<int64_t>(r) * D + (c & ~3) + (c & 2);
        const float co = cs[0], si = cs[1];
        const float ra = a * co + b * si, rb = b * co - a * si;
        a = ra, b = rb;
      }
      attn_store2(base + r * stride + c, a, b, vec);
    }
  }
}

struct AttnFwdArgs {
  AttnTensor q, k, v;
  float* out;  // [B, N, heads·D]
  float* lse;  // [B, heads, N] or null
  int H, N, M, D;
  int q_tiles;  // ceil(N / 64)
  float scale_log2;  // scale·log2(e)
  const float* q_rope;  // rope_table of the queries, or null (no RoPE)
  const float* k_rope;  // of the keys
  bool vec;  // q, k, v rows are 16-byte aligned
};

// The backward's arguments (attention.cuh's kernels, the Hopper dq kernel).
struct AttnBwdArgs {
  AttnTensor q, k, v;
  AttnTensor dout;  // [B, N, heads·D] as [B, N, heads, D] (sh = D)
  const float* lse;  // [B, heads, N], natural log
  const float* delta;  // [B, heads, N]: rowsum(dout ⊙ out), attention_bwd_delta
  AttnOutTensor dq, dk, dv;  // written through their strides (views of a packed tensor or not)
  int H, N, M, D;
  int tiles;  // ceil(M / 64) for attention_bwd_dkdv, ceil(N / 64) for attention_bwd_dq
  float scale, scale_log2;
  const float* q_rope;
  const float* k_rope;
  bool vec;  // q, k, v, dout rows are 16-byte aligned
};

// The log-sum-exp (times log2 e) and delta of this lane's two rows (row0 +
// lane/4 and 8 further) of a warp's 16 queries of a (batch, head) pair; 0
// past N.
VL_DEVICE void attn_row_stats(const AttnBwdArgs& a, int pair, int row0, float lse2[2], float delta[2]) {
  for (int half = 0; half < 2; ++half) {
    const int r = row0 + (simt::lane() >> 2) + 8 * half;
    const int64_t i = static_cast<int64_t>(pair) * a.N + r;
    lse2[half] = r < a.N ? a.lse[i] * kLog2e : 0.0f;
    delta[half] = r < a.N ? a.delta[i] : 0.0f;
  }
}

// The first rows of a (batch, head) pair's queries, keys and values.
struct AttnPairRows {
  const float *q, *k, *v;
};
VL_DEVICE AttnPairRows attn_pair_rows(const AttnFwdArgs& a, int pair) {
  const int b = pair / a.H, h = pair % a.H;
  return {a.q.data + b * a.q.sb + h * a.q.sh, a.k.data + b * a.k.sb + h * a.k.sh, a.v.data + b * a.v.sb + h * a.v.sh};
}

// One step of the online softmax of a warp's 16 rows (log2 domain) over a
// block of kBN scores s in the accumulator layout: columns past `cols`
// (keys past M, zero rows) are masked; m and l (this lane's columns; the 4
// lanes of a row add up at the end) and the output o are rescaled, and s
// becomes the block's probabilities.
template <int kBN, int kDp>
VL_DEVICE void attn_online_softmax(float (&s)[kBN / 8][4], float (&o)[kDp / 8][4], float (&m)[2], float (&l)[2], int cols,
                                   float scale_log2) {
  const int t = simt::lane() & 3;
  for (int half = 0; half < 2; ++half) {
    float mx = m[half];
    for (int j = 0; j < kBN / 8; ++j)
      for (int e = 0; e < 2; ++e) {
        float& x = s[j][2 * half + e];
        x = 8 * j + 2 * t + e < cols ? x * scale_log2 : -INFINITY;
        mx = fmaxf(mx, x);
      }
    mx = fmaxf(mx, simt::shfl_xor(mx, 1));
    mx = fmaxf(mx, simt::shfl_xor(mx, 2));
    const float corr = exp2f(m[half] - mx);
    m[half] = mx;
    float sum = 0.0f;
    for (int j = 0; j < kBN / 8; ++j)
      for (int e = 0; e < 2; ++e) {
        float& x = s[j][2 * half + e];
        x = exp2f(x - mx);
        sum += x;
      }
    l[half] = l[half] * corr + sum;
    for (int j = 0; j < kDp / 8; ++j) o[j][2 * half] *= corr, o[j][2 * half + 1] *= corr;
  }
}

// The end of a forward tile for a warp's 16 rows from row0: the row sums,
// the log-sum-exp (when asked for) and the normalised output.
template <int kDp>
VL_DEVICE void attn_fwd_finish(float (&o)[kDp / 8][4], const float (&m)[2], float (&l)[2], const AttnFwdArgs& a, int pair,
                               int row0) {
  const int g = simt::lane() >> 2, t = simt::lane() & 3, b = pair / a.H, h = pair % a.H;
  float inv[2];
  for (int half = 0; half < 2; ++half) {
    l[half] += simt::shfl_xor(l[half], 1);
    l[half] += simt::shfl_xor(l[half], 2);
    inv[half] = 1.0f / l[half];
    const int r = row0 + g + 8 * half;
    if (a.lse && t == 0 && r < a.N) a.lse[static_cast<int64_t>(pair) * a.N + r] = (m[half] + log2f(l[half])) * kLn2;
  }
  for (int j = 0; j < kDp / 8; ++j)
    for (int half = 0; half < 2; ++half) o[j][2 * half] *= inv[half], o[j][2 * half + 1] *= inv[half];
  const int64_t out_stride = static_cast<int64_t>(a.H) * a.D;
  attn_store_rows<kDp>(o, a.out + static_cast<int64_t>(b) * a.N * out_stride + h * a.D, out_stride, row0, a.N, a.D,
                       1.0f, nullptr);
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
