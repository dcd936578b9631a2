// Fused AS2DRoPE flash attention on tensor cores (flash-attention-2 style),
// forward and backward, with the contract of cpu/attention.cc and
// cpu/attention_backward.cc. Kernel source shared by nvcc and the SIMT runner.
//
// Precision: f32 operands are split as x = hi + lo (hi = bf16(x), lo =
// bf16(x - hi)) and every product is hi·hi + hi·lo + lo·hi with fp32
// accumulation (AttnSplit, kParts = 2), ≈1e-5 relative to an f32 kernel;
// AttnBf16 is the plain bf16 product (hi·hi), AttnF16 the same with fp16
// operands (f16 mma). The kernels take the arithmetic as a type P. Softmax runs in fp32 with exp2 and the
// scale pre-multiplied by log2(e).
//
// RoPE: cos/sin come from small per-call tables ([tokens][D/4] of (cos x,
// sin x, cos y, sin y), rope_table below) rather than from positions in the
// kernels: every block re-rotates all keys of its (batch, head), and a
// sincosf per key pair per block would compete with the tensor-core work of
// that pair for issue slots; the tables are (N + M)·D floats that stay in L2.
// Rotation happens while a tile is converted into shared memory, and its
// transpose (rotation by -angle) is applied to dq and dk in registers.
//
// Tiles: 4 warps per block, each owning 16 rows (queries in the forward and
// dq kernels, keys in the dk/dv kernel). Head widths D (a multiple of 4) run
// in a kernel padded to kDp = D rounded up to 16, the padding columns zero.
// Shared-memory rows are kDp + 8 bf16 wide so the 8 row addresses of an
// ldmatrix fall in distinct banks. Tiles are converted (f32 -> rotated bf16
// hi/lo) on their way into shared memory. The forward, when rows are 16-byte
// aligned, copies the next key/value tile into an f32 staging tile with
// cp.async while the current one is computed on, and converts it
// shared-to-shared; so do the backward kernels with their streamed tiles
// (kAsync), which the launcher picks where the staging tiles cost no
// resident blocks (at D = 128 the backward already holds 102 KiB).
#pragma once
#include "cuda/kernels/attention_tiles.cuh"

namespace vl {
namespace cuda {
namespace kernels {

// table[n][i] = (cos x_n f_i, sin x_n f_i, cos y_n f_i, sin y_n f_i) for
// tokens n < count, i < D/4; one thread per entry.
VL_GLOBAL void rope_table(AttnPositions p, AttnFreqs freqs, int count, int quarter, float* VL_RESTRICT table) {
  const int64_t e = static_cast<int64_t>(simt::block_x()) * simt::block_dim_x() + simt::thread_x();
  if (e >= static_cast<int64_t>(count) * quarter) return;
  const int64_t n = e / quarter;
  const int i = static_cast<int>(e % quarter);
  float x, y;
  if (p.x) {
    x = p.x[n], y = p.y[n];
  } else {
    const int64_t idx = n + p.offset, row = attn_floor_div(idx, p.cols);
    x = attn_add(p.bias, attn_mul(static_cast<float>(idx - row * p.cols), p.step));
    y = attn_add(p.bias, attn_mul(static_cast<float>(row), p.step));
  }
  const float ax = attn_mul(x, freqs.f[i]), ay = attn_mul(y, freqs.f[i]);
  float* t = table + 4 * e;
  t[0] = cosf(ax), t[1] = sinf(ax), t[2] = cosf(ay), t[3] = sinf(ay);
}

// Dynamic shared memory of attention_fwd: the bf16 tiles (the query tile,
// then the key and value tiles in the same space), and with kAsync the f32
// staging tile the next keys and values (or the queries) land in.
template <int kDp, typename P>
constexpr int kAttnFwdTileElems =
    P::kParts * kAttnSmemStride<kDp> * (kAttnRows > 2 * kAttnStreamRows<kDp> ? kAttnRows : 2 * kAttnStreamRows<kDp>);
template <int kDp>
constexpr int kAttnFwdStageFloats = kDp * (kAttnRows > 2 * kAttnStreamRows<kDp> ? kAttnRows : 2 * kAttnStreamRows<kDp>);
template <int kDp, typename P, bool kAsync>
constexpr int kAttnFwdSmemBytes = 2 * kAttnFwdTileElems<kDp, P> + (kAsync ? 4 * kAttnFwdStageFloats<kDp> : 0);

// grid.x = q_tiles · B · heads, blockDim.x = 128, kAttnFwdSmemBytes of
// dynamic shared memory. Each warp keeps its 16 rotated queries as A
// fragments in registers, streams the keys and values through shared memory
// and keeps running max, sum and output in registers. kAsync (rows 16-byte
// aligned): the next key and value tiles are copied (cp.async) into the
// staging tile while the current ones are computed on, then rotated and
// split shared-to-shared; otherwise each tile is read, rotated and split on
// its way in from global memory.
template <int kDp, typename P, bool kAsync>
VL_GLOBAL void VL_LAUNCH_BOUNDS(kAttnThreads) attention_fwd(const AttnFwdArgs a) {
  constexpr int kBN = kAttnStreamRows<kDp>;
  using QTile = AttnTile<kAttnRows, kDp, P>;
  using KTile = AttnTile<kBN, kDp, P>;
  uint16_t* smem = reinterpret_cast<uint16_t*>(simt::dynamic_shared());
  float* stage = reinterpret_cast<float*>(smem + kAttnFwdTileElems<kDp, P>);
  const int warp = simt::warp();
  const int pair = simt::block_x() / a.q_tiles, n0 = simt::block_x() % a.q_tiles * kAttnRows;
  const AttnPairRows in = attn_pair_rows(a, pair);
  const float *q = in.q, *k = in.k, *v = in.v;

  const QTile qt{smem};
  if constexpr (kAsync) {
    attn_stage<kAttnRows, kDp>(stage, q + n0 * a.q.st, a.q.st, a.N - n0, a.D);
    simt::cp_async_commit();
    simt::cp_async_wait<0>();
    simt::sync_threads();
    attn_fill(qt, stage, kDp, a.N - n0, a.D, attn_table_rows(a.q_rope, n0, a.D), true);
  } else {
    attn_fill(qt, q + n0 * a.q.st, a.q.st, a.N - n0, a.D, attn_table_rows(a.q_rope, n0, a.D), a.vec);
  }
  simt::sync_threads();
  uint32_t qf[kDp / 16][P::kParts][4];
  for (int ks = 0; ks < kDp / 16; ++ks) attn_a_frag(qt, 16 * warp, ks, qf[ks]);
  // The staged queries are read; the first keys and values may land there.
  simt::sync_threads();
  float* k_stage = stage;
  float* v_stage = stage + kBN * kDp;
  if constexpr (kAsync) {
    attn_stage<kBN, kDp>(k_stage, k, a.k.st, a.M, a.D);
    attn_stage<kBN, kDp>(v_stage, v, a.v.st, a.M, a.D);
    simt::cp_async_commit();
  }

  float o[kDp / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const KTile kt{smem}, vt{smem + KTile::kElems};
  for (int m0 = 0; m0 < a.M; m0 += kBN) {
    const int rows = a.M - m0 < kBN ? a.M - m0 : kBN;
    if constexpr (kAsync) {
      // This tile has landed and every warp is done with the previous one.
      simt::cp_async_wait<0>();
      simt::sync_threads();
      attn_fill(kt, k_stage, kDp, rows, a.D, attn_table_rows(a.k_rope, m0, a.D), true);
      attn_fill(vt, v_stage, kDp, rows, a.D, nullptr, true);
      simt::sync_threads();
      // The next tile streams in while this one is computed on.
      const int next = m0 + kBN;
      if (next < a.M) {
        attn_stage<kBN, kDp>(k_stage, k + next * a.k.st, a.k.st, a.M - next, a.D);
        attn_stage<kBN, kDp>(v_stage, v + next * a.v.st, a.v.st, a.M - next, a.D);
      }
      simt::cp_async_commit();
    } else {
      attn_fill(kt, k + m0 * a.k.st, a.k.st, rows, a.D, attn_table_rows(a.k_rope, m0, a.D), a.vec);
      attn_fill(vt, v + m0 * a.v.st, a.v.st, rows, a.D, nullptr, a.vec);
      simt::sync_threads();
    }
    float s[kBN / 8][4] = {};
    attn_mma_nt(s, [&](int ks, uint32_t(&f)[P::kParts][4]) {
      for (int l2 = 0; l2 < P::kParts; ++l2)
        for (int i = 0; i < 4; ++i) f[l2][i] = qf[ks][l2][i];
    }, kt);
    attn_online_softmax<kBN, kDp>(s, o, m, l, rows, a.scale_log2);
    uint32_t pf[kBN / 16][P::kParts][4];
    attn_acc_to_a<kBN, P>(s, pf);
    attn_mma_nn<kBN, kDp, P>(o, pf, vt);
    if constexpr (!kAsync) simt::sync_threads();  // the next tiles overwrite these
  }

  attn_fwd_finish<kDp>(o, m, l, a, pair, n0 + 16 * warp);
}

// ---- backward ----

// delta[(b·heads + h)·N + n] = Σ_d dout·out over the head's columns, in fp32;
// a warp per row, blockDim.x = 128, grid.x = ceil(rows / 4).
VL_GLOBAL void VL_LAUNCH_BOUNDS(kAttnThreads) attention_bwd_delta(const AttnTensor dout, const AttnTensor out, int H, int N, int D, int64_t rows,
                                   float* VL_RESTRICT delta) {
  const int64_t r = static_cast<int64_t>(simt::block_x()) * kAttnWarps + simt::warp();
  float sum = 0.0f;
  if (r < rows) {
    const int64_t n = r % N, bh = r / N, b = bh / H, h = bh % H;
    const float* d = dout.data + b * dout.sb + n * dout.st + h * dout.sh;
    const float* o = out.data + b * out.sb + n * out.st + h * out.sh;
    for (int c = simt::lane(); c < D; c += 32) sum += d[c] * o[c];
  }
  for (int m = 16; m > 0; m >>= 1) sum += simt::shfl_xor(sum, m);
  if (r < rows && simt::lane() == 0) delta[r] = sum;
}

// Dynamic shared memory of both backward kernels: two tiles of the block's
// 64 own rows, two streamed tiles, per streamed row lse and delta, and with
// kAsync the f32 staging tiles the next two streamed tiles land in.
template <int kDp, typename P, bool kAsync>
constexpr int kAttnBwdSmemBytes = 2 * (2 * P::kParts * (kAttnRows + kAttnStreamRows<kDp>)*kAttnSmemStride<kDp>) +
                                  2 * 4 * kAttnStreamRows<kDp> + (kAsync ? 2 * 4 * kAttnStreamRows<kDp> * kDp : 0);

// Where the backward's kAsync staging tiles ([2][kBS][kDp] f32) start in its
// dynamic shared memory: after the tiles and the lse and delta rows.
template <int kDp, typename P>
VL_DEVICE float* attn_bwd_stage_tiles(uint16_t* smem) {
  constexpr int kBS = kAttnStreamRows<kDp>;
  return reinterpret_cast<float*>(smem + 2 * (AttnTile<kAttnRows, kDp, P>::kElems + AttnTile<kBS, kDp, P>::kElems)) +
         2 * kBS;
}

// The backward's streamed pair of tiles (queries and dOut, or keys and
// values), `rows` of them: with kAsync, converted from the staging tiles
// (which must hold them: staged and waited for); otherwise read from src0
// and src1 in global memory. `table` rotates the first of the pair.
template <bool kAsync, int kBS, int kDp, typename P>
VL_DEVICE void attn_bwd_fill_pair(const AttnTile<kBS, kDp, P>& t0, const AttnTile<kBS, kDp, P>& t1, const float* stage,
                                  const float* src0, int64_t st0, const float* src1, int64_t st1, int rows, int D,
                                  const float* table, bool vec) {
  if constexpr (kAsync) {
    attn_fill(t0, stage, kDp, rows, D, table, true);
    attn_fill(t1, stage + kBS * kDp, kDp, rows, D, nullptr, true);
  } else {
    attn_fill(t0, src0, st0, rows, D, table, vec);
    attn_fill(t1, src1, st1, rows, D, nullptr, vec);
  }
}

// With kAsync, starts the copies of the streamed pair at row r0 of src0 and
// src1 (`total` rows each; none past them) into the staging tiles and
// commits them as one group (an empty group keeps the count uniform).
template <bool kAsync, int kBS, int kDp>
VL_DEVICE void attn_bwd_stage_pair(float* stage, const float* src0, int64_t st0, const float* src1, int64_t st1, int r0,
                                   int total, int D) {
  if constexpr (kAsync) {
    if (r0 < total) {
      attn_stage<kBS, kDp>(stage, src0 + r0 * st0, st0, total - r0, D);
      attn_stage<kBS, kDp>(stage + kBS * kDp, src1 + r0 * st1, st1, total - r0, D);
    }
    simt::cp_async_commit();
  }
}

// dk, dv for 64 keys of one (batch, head): grid.x = tiles · B · heads,
// blockDim.x = 128, kAttnBwdSmemBytes of dynamic shared memory. kAsync
// (rows 16-byte aligned): the next query and dOut tiles stream in through
// cp.async while the current ones are computed on. Each warp
// owns 16 keys and walks all query tiles: Sᵀ = K·Qᵀ, Pᵀ = exp2(Sᵀ·scale·log2e −
// lse·log2e), dV += Pᵀ·dO, dPᵀ = V·dOᵀ, dSᵀ = Pᵀ ⊙ (dPᵀ − delta), dK += dSᵀ·Q;
// dk is scaled and rotated back at the end. The sums stay in registers and
// each block writes its keys alone (no atomics: the result is deterministic).
template <int kDp, typename P, bool kAsync>
VL_GLOBAL void VL_LAUNCH_BOUNDS(kAttnThreads) attention_bwd_dkdv(const AttnBwdArgs a) {
  constexpr int kBS = kAttnStreamRows<kDp>;
  using Own = AttnTile<kAttnRows, kDp, P>;
  using Stream = AttnTile<kBS, kDp, P>;
  uint16_t* smem = reinterpret_cast<uint16_t*>(simt::dynamic_shared());
  const Own kt{smem}, vt{smem + Own::kElems};
  const Stream qt{smem + 2 * Own::kElems}, dt{smem + 2 * Own::kElems + Stream::kElems};
  float* lse_s = reinterpret_cast<float*>(smem + 2 * Own::kElems + 2 * Stream::kElems);
  float* delta_s = lse_s + kBS;
  float* stage = attn_bwd_stage_tiles<kDp, P>(smem);
  const int lane = simt::lane(), warp = simt::warp(), t = lane & 3;
  const int pair = simt::block_x() / a.tiles, m0 = simt::block_x() % a.tiles * kAttnRows;
  const int b = pair / a.H, h = pair % a.H;
  const float* q = a.q.data + b * a.q.sb + h * a.q.sh;
  const float* k = a.k.data + b * a.k.sb + h * a.k.sh;
  const float* v = a.v.data + b * a.v.sb + h * a.v.sh;
  const float* dout = a.dout.data + b * a.dout.sb + h * a.dout.sh;
  const float* lse = a.lse + static_cast<int64_t>(pair) * a.N;
  const float* delta = a.delta + static_cast<int64_t>(pair) * a.N;

  // The first queries and dOut stream in while the block's own keys and values are converted.
  attn_bwd_stage_pair<kAsync, kBS, kDp>(stage, q, a.q.st, dout, a.dout.st, 0, a.N, a.D);
  attn_fill(kt, k + m0 * a.k.st, a.k.st, a.M - m0, a.D, attn_table_rows(a.k_rope, m0, a.D), a.vec);
  attn_fill(vt, v + m0 * a.v.st, a.v.st, a.M - m0, a.D, nullptr, a.vec);
  float dk[kDp / 8][4] = {}, dv[kDp / 8][4] = {};
  const auto k_frag = [&](int ks, uint32_t(&f)[P::kParts][4]) { attn_a_frag(kt, 16 * warp, ks, f); };
  const auto v_frag = [&](int ks, uint32_t(&f)[P::kParts][4]) { attn_a_frag(vt, 16 * warp, ks, f); };
  for (int n0 = 0; n0 < a.N; n0 += kBS) {
    const int rows = a.N - n0 < kBS ? a.N - n0 : kBS;
    if constexpr (kAsync) {
      // This pair has landed and every warp is done with the previous one.
      simt::cp_async_wait<0>();
      simt::sync_threads();
    }
    attn_bwd_fill_pair<kAsync>(qt, dt, stage, q + n0 * a.q.st, a.q.st, dout + n0 * a.dout.st, a.dout.st, rows, a.D,
                               attn_table_rows(a.q_rope, n0, a.D), a.vec);
    // Queries past N are zero rows of Q and dO: they add nothing to dV or dK.
    for (int i = simt::thread_x(); i < kBS; i += kAttnThreads) {
      lse_s[i] = i < rows ? lse[n0 + i] * kLog2e : 0.0f;
      delta_s[i] = i < rows ? delta[n0 + i] : 0.0f;
    }
    simt::sync_threads();
    // The next pair streams in while this one is computed on.
    attn_bwd_stage_pair<kAsync, kBS, kDp>(stage, q, a.q.st, dout, a.dout.st, n0 + kBS, a.N, a.D);
    float s[kBS / 8][4] = {}, dp[kBS / 8][4] = {};
    attn_mma_nt(s, k_frag, qt);
    attn_mma_nt(dp, v_frag, dt);
    for (int j = 0; j < kBS / 8; ++j)
      for (int i = 0; i < 4; ++i) {
        const int col = 8 * j + 2 * t + (i & 1);
        s[j][i] = exp2f(s[j][i] * a.scale_log2 - lse_s[col]);
        dp[j][i] = s[j][i] * (dp[j][i] - delta_s[col]);
      }
    uint32_t f[kBS / 16][P::kParts][4];
    attn_acc_to_a<kBS, P>(s, f);
    attn_mma_nn<kBS, kDp, P>(dv, f, dt);
    attn_acc_to_a<kBS, P>(dp, f);
    attn_mma_nn<kBS, kDp, P>(dk, f, qt);
    if constexpr (!kAsync) simt::sync_threads();  // the next query tile overwrites these
  }
  const int row0 = m0 + 16 * warp;
  attn_store_rows<kDp>(dk, a.dk.data + b * a.dk.sb + h * a.dk.sh, a.dk.st, row0, a.M, a.D, a.scale, a.k_rope);
  attn_store_rows<kDp>(dv, a.dv.data + b * a.dv.sb + h * a.dv.sh, a.dv.st, row0, a.M, a.D, 1.0f, nullptr);
}

// dq for 64 queries of one (batch, head): grid.x = tiles · B · heads,
// blockDim.x = 128, kAttnBwdSmemBytes of dynamic shared memory; kAsync as in
// the dk/dv kernel, for the key and value tiles. Each warp
// owns 16 queries and walks all key tiles: S = Q·Kᵀ, P from lse, dP = dO·Vᵀ,
// dS = P ⊙ (dP − delta), dQ += dS·K; scaled and rotated back at the end. A
// separate pass from dk/dv (recomputing S and dP) so dq needs no atomics.
template <int kDp, typename P, bool kAsync>
VL_GLOBAL void VL_LAUNCH_BOUNDS(kAttnThreads) attention_bwd_dq(const AttnBwdArgs a) {
  constexpr int kBS = kAttnStreamRows<kDp>;
  using Own = AttnTile<kAttnRows, kDp, P>;
  using Stream = AttnTile<kBS, kDp, P>;
  uint16_t* smem = reinterpret_cast<uint16_t*>(simt::dynamic_shared());
  const Own qt{smem}, dt{smem + Own::kElems};
  const Stream kt{smem + 2 * Own::kElems}, vt{smem + 2 * Own::kElems + Stream::kElems};
  float* stage = attn_bwd_stage_tiles<kDp, P>(smem);
  const int warp = simt::warp();
  const int pair = simt::block_x() / a.tiles, n0 = simt::block_x() % a.tiles * kAttnRows;
  const int b = pair / a.H, h = pair % a.H;
  const float* q = a.q.data + b * a.q.sb + h * a.q.sh;
  const float* k = a.k.data + b * a.k.sb + h * a.k.sh;
  const float* v = a.v.data + b * a.v.sb + h * a.v.sh;
  const float* dout = a.dout.data + b * a.dout.sb + h * a.dout.sh;
  const int row0 = n0 + 16 * warp;

  attn_bwd_stage_pair<kAsync, kBS, kDp>(stage, k, a.k.st, v, a.v.st, 0, a.M, a.D);
  attn_fill(qt, q + n0 * a.q.st, a.q.st, a.N - n0, a.D, attn_table_rows(a.q_rope, n0, a.D), a.vec);
  attn_fill(dt, dout + n0 * a.dout.st, a.dout.st, a.N - n0, a.D, nullptr, a.vec);
  float lse2[2], delta[2];
  attn_row_stats(a, pair, row0, lse2, delta);
  float dq[kDp / 8][4] = {};
  const auto q_frag = [&](int ks, uint32_t(&f)[P::kParts][4]) { attn_a_frag(qt, 16 * warp, ks, f); };
  const auto d_frag = [&](int ks, uint32_t(&f)[P::kParts][4]) { attn_a_frag(dt, 16 * warp, ks, f); };
  for (int m0 = 0; m0 < a.M; m0 += kBS) {
    const int rows = a.M - m0 < kBS ? a.M - m0 : kBS;
    if constexpr (kAsync) {
      simt::cp_async_wait<0>();
      simt::sync_threads();
    }
    attn_bwd_fill_pair<kAsync>(kt, vt, stage, k + m0 * a.k.st, a.k.st, v + m0 * a.v.st, a.v.st, rows, a.D,
                               attn_table_rows(a.k_rope, m0, a.D), a.vec);
    simt::sync_threads();
    attn_bwd_stage_pair<kAsync, kBS, kDp>(stage, k, a.k.st, v, a.v.st, m0 + kBS, a.M, a.D);
    float s[kBS / 8][4] = {}, dp[kBS / 8][4] = {};
    attn_mma_nt(s, q_frag, kt);
    attn_mma_nt(dp, d_frag, vt);
    // Keys past M are zero rows of K: whatever dS they get adds nothing to dQ.
    for (int j = 0; j < kBS / 8; ++j)
      for (int i = 0; i < 4; ++i) {
        const float p = exp2f(s[j][i] * a.scale_log2 - lse2[i >> 1]);
        dp[j][i] = p * (dp[j][i] - delta[i >> 1]);
      }
    uint32_t f[kBS / 16][P::kParts][4];
    attn_acc_to_a<kBS, P>(dp, f);
    attn_mma_nn<kBS, kDp, P>(dq, f, kt);
    if constexpr (!kAsync) simt::sync_threads();  // the next key tile overwrites these
  }
  attn_store_rows<kDp>(dq, a.dq.data + b * a.dq.sb + h * a.dq.sh, a.dq.st, row0, a.N, a.D, a.scale, a.q_rope);
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
