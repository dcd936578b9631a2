// The Hopper (sm_90a) forward of the fused AS2DRoPE flash attention at
// 16-bit precision (AttnBf16, AttnF16): attention_fwd's contract and results
// (up to the order of f32 sums), with both products on wgmma. Kernel source
// shared by nvcc (compiled for sm_90a) and the SIMT runner.
//
// Block: two warpgroups (256 threads), 128 query rows, each warpgroup 64.
// Per key block of kBN keys:
//   S = Q·Kᵀ: wgmma m64n{kBN}k16 per k16 slice of the head, A = the rotated
//     queries as mma A fragments kept in registers for the whole block, B =
//     the rotated keys in shared memory as no-swizzle K-major core matrices
//     (8 keys x 8 channels of 16 bytes; (key/8, d/8) at ((key/8)·kDp/8 + d/8)·128).
//   online softmax on the accumulators in registers (attn_online_softmax);
//   O += P·V: wgmma m64n{kDp}k16 per k16 slice of the keys, A = P converted
//     to fragments in registers (the accumulator of S is A's layout), B = V
//     stored transposed as K-major core matrices ((d/8, key/8) at
//     ((d/8)·kBN/8 + key/8)·128), so both products use the one descriptor
//     form the runner checks.
// Keys and values reach shared memory as in attention_fwd's kAsync path:
// cp.async into an f32 staging tile while the previous block is computed on,
// then rotated and converted shared-to-shared (st.shared, so each thread
// fences its stores into the async proxy before the barrier that precedes
// the products).
#pragma once
#include "cuda/kernels/attention_tiles.cuh"

namespace vl {
namespace cuda {
namespace kernels {

constexpr int kAttnWgThreads = 256, kAttnWgRows = 128;
// Keys per block: the S accumulator and P fragments of a thread take 3/4 kBN
// registers, O kDp/2 and the query fragments kDp/4.
template <int kDp>
constexpr int kAttnWgKeys = kDp <= 64 ? 128 : 64;
// The head widths with a wgmma kernel (n = kDp must be one of the products simt.cuh wraps).
template <int kDp>
constexpr bool kAttnWgmmaWidth = kDp == 32 || kDp == 64 || kDp == 96 || kDp == 128;

// Shared memory: f32 staging for the queries, then for a key and a value
// block; the padded query tile of attn_fill; the key and value core matrices.
template <int kDp>
constexpr int kAttnWgStageBytes = 4 * kDp * (kAttnWgRows > 2 * kAttnWgKeys<kDp> ? kAttnWgRows : 2 * kAttnWgKeys<kDp>);
template <int kDp>
constexpr int kAttnWgQBytes = 2 * kAttnWgRows * kAttnSmemStride<kDp>;
template <int kDp>
constexpr int kAttnWgKvBytes = 2 * kAttnWgKeys<kDp> * kDp;
template <int kDp>
constexpr int kAttnWgSmemBytes = kAttnWgStageBytes<kDp> + kAttnWgQBytes<kDp> + 2 * kAttnWgKvBytes<kDp>;

// Byte offset of element (row, col) in no-swizzle K-major core matrices with
// kCols columns (the k dimension) per row of core matrices.
template <int kCols>
VL_DEVICE int attn_core_offset(int row, int col) {
  return ((row >> 3) * (kCols / 8) + (col >> 3)) * 128 + (row & 7) * 16 + (col & 7) * 2;
}

// Block-cooperative: the keys of the staging tile (kBN rows of kDp floats),
// rotated by the table, as 16-bit core matrices [key][d]. Rows past `rows`
// and columns past D are zero.
template <int kBN, int kDp, typename Ops>
VL_DEVICE void attn_fill_keys_core(unsigned char* dst, const float* stage, int rows, int D, const float* table) {
  constexpr int kGroups = kDp / 4;
  for (int i = simt::thread_x(); i < kBN * kGroups; i += kAttnWgThreads) {
    const int r = i / kGroups, c = 4 * (i % kGroups);
    float v[4];
    attn_load_rotated4(stage, kDp, r, c, rows, D, table, true, v);
    attn_store4(reinterpret_cast<uint16_t*>(dst + attn_core_offset<kDp>(r, c)), Ops::pack(v[0], v[1]), Ops::pack(v[2], v[3]));
  }
}

// Block-cooperative: the values of the staging tile, transposed, as 16-bit
// core matrices [d][key]: a thread takes keys r, r + 1 of 4 channels and
// stores each channel's pair as one word.
template <int kBN, int kDp, typename Ops>
VL_DEVICE void attn_fill_values_core(unsigned char* dst, const float* stage, int rows, int D) {
  constexpr int kGroups = kDp / 4;
  for (int i = simt::thread_x(); i < kBN / 2 * kGroups; i += kAttnWgThreads) {
    const int r = 2 * (i / kGroups), c = 4 * (i % kGroups);
    float v0[4], v1[4];
    attn_load_rotated4(stage, kDp, r, c, rows, D, nullptr, true, v0);
    attn_load_rotated4(stage, kDp, r + 1, c, rows, D, nullptr, true, v1);
    for (int e = 0; e < 4; ++e) {
      const uint32_t w = Ops::pack(v0[e], v1[e]);
#if defined(__CUDACC__)
      *reinterpret_cast<uint32_t*>(dst + attn_core_offset<kBN>(c + e, r)) = w;
#else
      std::memcpy(dst + attn_core_offset<kBN>(c + e, r), &w, 4);
#endif
    }
  }
}

// acc (a warpgroup's 64 x N) += A·B over kSlices k16 slices, and wait for
// the products: A the fragments a[s], B the core matrices of slice s at
// base + 256 s (two core matrices along k), rows of core matrices sbo bytes apart.
template <typename Ops, int N, int kSlices>
VL_DEVICE void attn_wgmma(float* acc, const uint32_t (&a)[kSlices][1][4], const unsigned char* base, uint32_t sbo) {
  simt::wgmma_fence();
  VL_UNROLL
  for (int s = 0; s < kSlices; ++s) Ops::template wgmma<N>(acc, a[s][0], simt::wgmma_desc(base + 256 * s, 128, sbo));
  simt::wgmma_commit();
  simt::wgmma_wait<0>();
  VL_UNROLL
  for (int i = 0; i < N / 2; ++i) simt::wgmma_fence_operand(acc[i]);
}

// grid.x = ceil(N / 128) · B · heads (a.q_tiles = ceil(N / 128)), blockDim.x
// = 256, kAttnWgSmemBytes<kDp> of dynamic shared memory; q, k, v rows
// 16-byte aligned (a.vec). kDp: kAttnWgmmaWidth.
template <int kDp, typename Ops>
VL_GLOBAL void VL_LAUNCH_BOUNDS(kAttnWgThreads) attention_fwd_wgmma(const AttnFwdArgs a) {
  using P = AttnArith<1, Ops>;
  constexpr int kBN = kAttnWgKeys<kDp>;
  static_assert(kAttnWgmmaWidth<kDp>, "no wgmma of this width");
  unsigned char* smem = simt::dynamic_shared();
  float* stage = reinterpret_cast<float*>(smem);
  const AttnTile<kAttnWgRows, kDp, P> qt{reinterpret_cast<uint16_t*>(smem + kAttnWgStageBytes<kDp>)};
  unsigned char* kcore = smem + kAttnWgStageBytes<kDp> + kAttnWgQBytes<kDp>;
  unsigned char* vcore = kcore + kAttnWgKvBytes<kDp>;
  const int warp = simt::warp();
  const int pair = simt::block_x() / a.q_tiles, n0 = simt::block_x() % a.q_tiles * kAttnWgRows;
  const AttnPairRows in = attn_pair_rows(a, pair);
  const float *q = in.q, *k = in.k, *v = in.v;

  // Queries: staged, rotated into the padded tile, then each warp's 16 rows
  // (16·warp: warp w%4 of warpgroup w/4 holds rows 16(w%4) of the group's 64)
  // as A fragments for every k16 slice of the head.
  attn_stage<kAttnWgRows, kDp, kAttnWgThreads>(stage, q + n0 * a.q.st, a.q.st, a.N - n0, a.D);
  simt::cp_async_commit();
  simt::cp_async_wait<0>();
  simt::sync_threads();
  attn_fill<kAttnWgRows, kDp, P, kAttnWgThreads>(qt, stage, kDp, a.N - n0, a.D, attn_table_rows(a.q_rope, n0, a.D), true);
  simt::sync_threads();
  uint32_t qf[kDp / 16][1][4];
  VL_UNROLL
  for (int ks = 0; ks < kDp / 16; ++ks) attn_a_frag(qt, 16 * warp, ks, qf[ks]);
  // The staged queries are read; the first keys and values may land there.
  simt::sync_threads();
  float* k_stage = stage;
  float* v_stage = stage + kBN * kDp;
  attn_stage<kBN, kDp, kAttnWgThreads>(k_stage, k, a.k.st, a.M, a.D);
  attn_stage<kBN, kDp, kAttnWgThreads>(v_stage, v, a.v.st, a.M, a.D);
  simt::cp_async_commit();

  float o[kDp / 8][4];
  VL_UNROLL
  for (int j = 0; j < kDp / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  for (int m0 = 0; m0 < a.M; m0 += kBN) {
    const int rows = a.M - m0 < kBN ? a.M - m0 : kBN;
    // This block has landed, and both warpgroups' products on the previous
    // one are done (each waited for them), so the core matrices are free.
    simt::cp_async_wait<0>();
    simt::sync_threads();
    attn_fill_keys_core<kBN, kDp, Ops>(kcore, k_stage, rows, a.D, attn_table_rows(a.k_rope, m0, a.D));
    attn_fill_values_core<kBN, kDp, Ops>(vcore, v_stage, rows, a.D);
    simt::fence_proxy_async();
    simt::sync_threads();
    const int next = m0 + kBN;
    if (next < a.M) {
      attn_stage<kBN, kDp, kAttnWgThreads>(k_stage, k + next * a.k.st, a.k.st, a.M - next, a.D);
      attn_stage<kBN, kDp, kAttnWgThreads>(v_stage, v + next * a.v.st, a.v.st, a.M - next, a.D);
    }
    simt::cp_async_commit();

    float s[kBN / 8][4];
    VL_UNROLL
    for (int j = 0; j < kBN / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
    attn_wgmma<Ops, kBN>(&s[0][0], qf, kcore, 128 * (kDp / 8));
    attn_online_softmax<kBN, kDp>(s, o, m, l, rows, a.scale_log2);
    uint32_t pf[kBN / 16][1][4];
    attn_acc_to_a<kBN, P>(s, pf);
    attn_wgmma<Ops, kDp>(&o[0][0], pf, vcore, 128 * (kBN / 8));
  }
  simt::cp_async_wait<0>();
  attn_fwd_finish<kDp>(o, m, l, a, pair, n0 + 16 * warp);
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
