// The tensor-core GEMM of the linear-algebra ops: C[M, N] = A[M, K] * B[N, K]^T
// with f32 accumulation, in one kernel template for every operand precision
// and epilogue. Kernel source shared by nvcc and the SIMT runner.
//
// Block tile 128x128, K step 32, 8 warps as 2 (M) x 4 (N), each warp a 64x32
// register tile of 4x4 mma.m16n8k16. Tiles stream global -> shared through a
// 3-stage cp.async pipeline (two tiles in flight while the third is
// multiplied, one barrier per K step) and go shared -> registers through
// ldmatrix.
//
// Precision. f32 operands stay f32 in shared memory and are split into bf16
// pairs as their fragments are loaded: x = hi + lo, hi = bf16(x), lo =
// bf16(x - hi), and with kPasses = 3 the warp accumulates lo*hi + hi*lo +
// hi*hi (about 1e-5 relative, like 3xTF32 emulation); kPasses = 1 keeps hi*hi
// only. Splitting at fragment time rather than while staging keeps the global
// -> shared path a pure cp.async copy (no registers, no second barrier per K
// step), at the cost of converting each A element once per warp column
// (4x) and each B element once per warp row (2x): a few ALU instructions per
// mma, far below the 3x mma time. bf16 operands are raw bits (uint16_t).
//
// ldmatrix on f32 data. ldmatrix moves 8x8 b16 matrices, i.e. 8 rows of 4
// floats: a lane receives float t = lane%4 of row lane/4, not the pair (2t,
// 2t+1) an mma fragment holds. A dot product does not care about the order of
// k as long as A and B agree, so the f32 fragments use the k order
//   fragment position 2t, 2t+1, 8+2t, 9+2t  <-  k = t, 4+t, 8+t, 12+t
// (packed_k below) within each 16-wide k step. bf16 operands loaded by
// ldmatrix come in natural order, so a bf16 B multiplied with an f32 A must be
// stored in that order within each 16 k (what pack_weight_rows writes); with
// a bf16 A, B is in natural order.
//
// Edges. Rows past M or N and k past K are zero-filled by cp.async (a
// src-size below 16), so any M, N, K work. cp.async needs 16-byte aligned
// chunks: rows 16-byte aligned (base and row stride) and k contiguous. When an
// operand is not (e.g. K = 7 in contiguous f32 rows), the launcher picks
// kAsync = false: the same tiles are filled by plain element loads and stores
// (same pipeline, no overlap), which also handles any k stride of the A source.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/half.h"
#include "cuda/simt.cuh"

namespace vl {
namespace cuda {
namespace kernels {
namespace gemm {

constexpr int kBM = 128, kBN = 128, kBK = 32, kStages = 3, kThreads = 256;
constexpr int kWarpM = 64, kWarpN = 32, kWarpsN = kBN / kWarpN;
constexpr int kMTiles = kWarpM / 16, kNTiles = kWarpN / 8;
// Consecutive blocks take 8 M tiles of one N tile before moving on, so a
// wave of blocks shares B tiles and a few A panels in L2.
constexpr int kGroupM = 8;
constexpr int kMaxBatchDims = 6;
static_assert(kThreads == 32 * (kBM / kWarpM) * kWarpsN, "one warp per warp tile");

// Shared row length in elements: 16 bytes of padding make a row an odd number
// of 16-byte chunks, so the 8 rows of an ldmatrix matrix (and of a cp.async
// warp) fall in distinct bank groups.
template <typename T, int kBk = kBK>
constexpr int kLd = kBk + static_cast<int>(16 / sizeof(T));
template <typename TA>
constexpr int kATileBytes = kBM * kLd<TA> * static_cast<int>(sizeof(TA));
template <typename TA, typename TB>
constexpr int kStageBytes = kATileBytes<TA> + kBN * kLd<TB> * static_cast<int>(sizeof(TB));
// Dynamic shared memory of gemm_kernel<TA, TB, ...>.
template <typename TA, typename TB>
constexpr int kSmemBytes = kStages * kStageBytes<TA, TB>;

// The k that position s of a k-permuted row holds (see the header comment).
VL_DEVICE int packed_k(int s) { return (s & ~15) | ((s >> 1) & 3) | ((s & 1) << 2) | (s & 8); }

// Where operand elements are: row r at base + row(r), element k of it at
// + col(k). Plain rows (any row stride, k contiguous).
struct Rows {
  int64_t ld = 0;
  VL_DEVICE int64_t row(int64_t r) const { return r * ld; }
  VL_DEVICE int64_t col(int k) const { return k; }
};

// conv_patch's A read in place from the image x [B, C, H, W]: row (b, gy, gx)
// (grid row-major), column (c, ky, kx) = x[b, c, gy*p + ky, gx*p + kx]. Runs
// of 4 k are contiguous when the W stride is 1 and p % 4 == 0, which is what
// cp.async needs (the launcher checks).
struct Patches {
  int64_t sb = 0, sc = 0, sh = 0, sw = 0;
  int p = 1, gw = 1, cells = 1;  // cells = (H / p) * (W / p)
  VL_DEVICE int64_t row(int64_t r) const {
    const int64_t b = r / cells, cell = r % cells;
    return b * sb + (cell / gw) * p * sh + (cell % gw) * p * sw;
  }
  VL_DEVICE int64_t col(int k) const {
    const int pp = p * p, c = k / pp, rem = k % pp;
    return c * sc + (rem / p) * sh + (rem % p) * sw;
  }
};

// Batched GEMMs: block z of the grid's batch index decomposes over `shape`
// (outermost first) into offsets of A and B (stride 0 where broadcast); C
// and the residual advance by c per batch.
struct Batch {
  int dims = 0;
  int64_t shape[kMaxBatchDims] = {};
  int64_t a[kMaxBatchDims] = {}, b[kMaxBatchDims] = {};
  int64_t c = 0;
};

template <typename TA, typename TB, typename ASrc>
struct Params {
  const TA* a = nullptr;
  ASrc a_src;
  const TB* b = nullptr;
  Rows b_src;
  float* c = nullptr;
  int64_t ldc = 0;
  const float* bias = nullptr;      // [out_n] or null
  const float* residual = nullptr;  // laid out like C, or null
  int M = 0, N = 0, K = 0;          // N: rows of B
  // How far B's rows are read: K, or a packed weight's padded row length (its
  // k order is permuted within 16-wide groups, so a cut at K would drop
  // columns below K; the padding is zero).
  int b_k = 0;
  int out_n = 0;                    // columns of C: N, or the SwiGLU hidden size
  int m_tiles = 0, n_tiles = 0;
  Batch batch;
};

// p with another B (rows of ld elements, read up to b_k): the launchers hand
// a weight converted to another type to the kernel that multiplies it.
template <typename TB2, typename TA, typename TB, typename ASrc>
inline Params<TA, TB2, ASrc> with_b(const Params<TA, TB, ASrc>& p, const TB2* b, int64_t ld, int b_k) {
  Params<TA, TB2, ASrc> q;
  q.a = p.a, q.a_src = p.a_src, q.b = b, q.b_src.ld = ld;
  q.c = p.c, q.ldc = p.ldc, q.bias = p.bias, q.residual = p.residual;
  q.M = p.M, q.N = p.N, q.K = p.K, q.b_k = b_k, q.out_n = p.out_n;
  q.m_tiles = p.m_tiles, q.n_tiles = p.n_tiles, q.batch = p.batch;
  return q;
}

// grid.x = batch count * m_tiles * n_tiles, blockDim.x = kThreads, dynamic
// shared memory kSmemBytes<TA, TB>.
template <typename TA, typename TB, typename ASrc>
inline int64_t grid_blocks(const Params<TA, TB, ASrc>& p, int64_t batches) {
  return batches * p.m_tiles * p.n_tiles;
}

// What block block_x() computes: the M x N tile at (m0, n0) of batch z, M
// tiles grouped (kGroupM), and that batch's A, B and C offset.
template <typename TA, typename TB>
struct BlockTile {
  int m0, n0;
  int64_t c_off;
  const TA* a;
  const TB* b;
  template <typename ASrc>
  VL_DEVICE BlockTile(const Params<TA, TB, ASrc>& p, int bm, int bn) {
    const int64_t tiles = static_cast<int64_t>(p.m_tiles) * p.n_tiles;
    int64_t z = simt::block_x() / tiles;
    const int t = static_cast<int>(simt::block_x() % tiles);
    const int group = t / (kGroupM * p.n_tiles), first_m = group * kGroupM;
    const int group_m = p.m_tiles - first_m < kGroupM ? p.m_tiles - first_m : kGroupM;
    m0 = (first_m + t % group_m) * bm;
    n0 = (t % (kGroupM * p.n_tiles)) / group_m * bn;
    c_off = z * p.batch.c;
    a = p.a;
    b = p.b;
    for (int d = p.batch.dims - 1; d >= 0; --d) {
      const int64_t idx = z % p.batch.shape[d];
      z /= p.batch.shape[d];
      a += idx * p.batch.a[d];
      b += idx * p.batch.b[d];
    }
  }
};

// ---- fragments ----

// x - hi, where hi = bf16(x); 0 where hi is not finite (x = +-Inf keeps hi*hi
// = Inf instead of adding Inf - Inf = NaN; a NaN x is NaN through hi).
VL_DEVICE float split_rest(float x, float hi) { return fabsf(hi) <= 3.40282347e38f ? x - hi : 0.0f; }

template <int kPasses, typename Ops>
VL_DEVICE void split_pair(uint32_t x_bits, uint32_t y_bits, uint32_t& hi, uint32_t& lo) {
  const float x = bits_f32(x_bits), y = bits_f32(y_bits);
  hi = Ops::pack(x, y);
  if constexpr (kPasses > 1) lo = simt::pack_bf16x2(split_rest(x, bits_f32(hi << 16)), split_rest(y, bits_f32(hi & 0xffff0000u)));
}

// An f32 A fragment (16 rows x 16 k) from two ldmatrix_x4 loads, this lane
// giving the address of row m + r + 8(i%2), floats 4(i/2).. (first load) and
// 8 + 4(i/2).. (second), with i = lane/8, r = lane%8.
template <int kPasses, typename Ops>
VL_DEVICE void load_a_f32(uint32_t hi[4], uint32_t lo[4], const float* first, const float* second) {
  uint32_t x0[4], x1[4];
  simt::ldmatrix_x4(x0, first);
  simt::ldmatrix_x4(x1, second);
  split_pair<kPasses, Ops>(x0[0], x0[2], hi[0], lo[0]);
  split_pair<kPasses, Ops>(x0[1], x0[3], hi[1], lo[1]);
  split_pair<kPasses, Ops>(x1[0], x1[2], hi[2], lo[2]);
  split_pair<kPasses, Ops>(x1[1], x1[3], hi[3], lo[3]);
}

// A fragment (16 rows x 16 k) at row m, k step kk of a shared tile (rows of kBk k, padded).
template <int kPasses, typename Ops, int kBk = kBK>
VL_DEVICE void load_a(uint32_t hi[4], uint32_t lo[4], const float* tile, int m, int kk, int lane) {
  const int i = lane >> 3, r = lane & 7;
  // Matrices: rows 0-7 / 8-15 of floats 0-3, then 4-7 (and 8-11, 12-15 in the second load).
  const float* p = tile + (m + r + (i & 1) * 8) * kLd<float, kBk> + kk + (i >> 1) * 4;
  load_a_f32<kPasses, Ops>(hi, lo, p, p + 8);
}

template <int kPasses, typename Ops>
VL_DEVICE void load_a(uint32_t hi[4], uint32_t[4], const uint16_t* tile, int m, int kk, int lane) {
  const int i = lane >> 3, r = lane & 7;
  simt::ldmatrix_x4(hi, tile + (m + r + (i & 1) * 8) * kLd<uint16_t> + kk + (i >> 1) * 8);
}

// B fragments of two n tiles (rows n..n+15 of the B tile) at k step kk.
template <int kPasses, typename Ops>
VL_DEVICE void load_b2(uint32_t hi[2][2], uint32_t lo[2][2], const float* tile, int n, int kk, int lane) {
  const int i = lane >> 3, r = lane & 7;
  for (int j = 0; j < 2; ++j) {
    // Matrix i: the 8 rows of n tile j, floats 4i..4i+3.
    uint32_t y[4];
    simt::ldmatrix_x4(y, tile + (n + 8 * j + r) * kLd<float> + kk + i * 4);
    split_pair<kPasses, Ops>(y[0], y[1], hi[j][0], lo[j][0]);
    split_pair<kPasses, Ops>(y[2], y[3], hi[j][1], lo[j][1]);
  }
}

template <int kPasses, typename Ops>
VL_DEVICE void load_b2(uint32_t hi[2][2], uint32_t[2][2], const uint16_t* tile, int n, int kk, int lane) {
  const int i = lane >> 3, r = lane & 7;
  // Matrices: n tile 0 k 0-7, k 8-15, then n tile 1.
  uint32_t y[4];
  simt::ldmatrix_x4(y, tile + (n + r + (i >> 1) * 8) * kLd<uint16_t> + kk + (i & 1) * 8);
  hi[0][0] = y[0], hi[0][1] = y[1], hi[1][0] = y[2], hi[1][1] = y[3];
}

// ---- global -> shared ----

template <typename T, int kRows, int kBk = kBK>
struct TileLoader {
  static constexpr int kVec = 16 / static_cast<int>(sizeof(T));  // elements per 16-byte chunk
  static constexpr int kChunksPerRow = kBk / kVec;
  static constexpr int kRowStep = kThreads / kChunksPerRow;
  static constexpr int kIters = kRows / kRowStep;
  static_assert(kThreads % kChunksPerRow == 0 && kRows % kRowStep == 0, "tile chunks split evenly over the threads");

  // Each thread copies the chunk at column kc of rows r0 + i * kRowStep,
  // the same rows at every K step: their offsets are computed once.
  int64_t row_off[kIters];
  bool row_ok[kIters];
  int r0, kc;

  template <typename Src>
  VL_DEVICE void init(const Src& src, int first_row, int rows, int tid) {
    r0 = tid / kChunksPerRow;
    kc = (tid % kChunksPerRow) * kVec;
    for (int i = 0; i < kIters; ++i) {
      const int r = first_row + r0 + i * kRowStep;
      row_ok[i] = r < rows;
      row_off[i] = row_ok[i] ? src.row(r) : 0;
    }
  }

  template <bool kAsync, typename Src>
  VL_DEVICE void load(T* tile, const T* base, const Src& src, int k0, int K) const {
    const int k = k0 + kc;
    for (int i = 0; i < kIters; ++i) {
      T* dst = tile + (r0 + i * kRowStep) * kLd<T, kBk> + kc;
      if (kAsync) {
        int bytes = row_ok[i] ? (K - k) * static_cast<int>(sizeof(T)) : 0;
        bytes = bytes < 0 ? 0 : bytes > 16 ? 16 : bytes;
        // Nothing is read for 0 bytes, but the address stays a valid one.
        simt::cp_async_16(dst, bytes ? base + row_off[i] + src.col(k) : base, bytes);
      } else {
        for (int e = 0; e < kVec; ++e) dst[e] = row_ok[i] && k + e < K ? base[row_off[i] + src.col(k + e)] : T(0);
      }
    }
  }
};

// ---- epilogue ----

VL_DEVICE float silu(float v) { return v / (1.0f + expf(-v)); }

// C[row, col..col+1] = v (+ bias) (+ residual), within the matrix.
VL_DEVICE void store_pair(float* c, const float* residual, const float* bias, int64_t ldc, int M, int out_n, int row,
                          int col, float v0, float v1) {
  if (row >= M) return;
  const float v[2] = {v0, v1};
  for (int j = 0; j < 2 && col + j < out_n; ++j) {
    const int64_t at = row * ldc + col + j;
    float out = v[j];
    if (bias) out += bias[col + j];
    if (residual) out += residual[at];
    c[at] = out;
  }
}

// The GEMM. kPasses: 3 (f32 x f32 as 3 bf16 products) or 1. kSwiGLU: B holds
// W1 and W2 interleaved in groups of 8 rows (W1 rows h..h+7, then W2 rows
// h..h+7, h = 0, 8, ...; N = 2 * round_up(H, 8)), and C[:, h] = silu(A W1^T)
// * (A W2^T) (+ residual), out_n = H: a warp's n tiles 2j and 2j+1 hold the
// two products of the same 8 columns in the same registers. kAsync: cp.async
// staging (aligned operands) or plain loads (any). Ops: the 16-bit format
// of the products and of uint16_t operands (bf16 bits, or with F16Ops fp16
// bits: packed f16 weights); the 3-pass split is bf16.
template <typename TA, typename TB, int kPasses, bool kSwiGLU, bool kAsync, typename ASrc, typename Ops = simt::Bf16Ops>
VL_GLOBAL void VL_LAUNCH_BOUNDS(kThreads) gemm_kernel(Params<TA, TB, ASrc> p) {
  static_assert(kPasses == 1 || (kPasses == 3 && sizeof(TA) == 4 && sizeof(TB) == 4), "3 passes split f32 operands");
  static_assert(sizeof(TA) >= sizeof(TB), "a bf16 A takes a bf16 B");
  static_assert(std::is_same<Ops, simt::Bf16Ops>::value || (kPasses == 1 && sizeof(TA) == 4),
                "fp16 products round an f32 A in one pass (B: f32, or packed fp16 bits)");
  unsigned char* smem = simt::dynamic_shared();
  const int tid = simt::thread_x(), lane = simt::lane(), warp = simt::warp();
  const BlockTile<TA, TB> bt(p, kBM, kBN);
  const int m0 = bt.m0, n0 = bt.n0;
  const int64_t c_off = bt.c_off;
  const TA* a = bt.a;
  const TB* b = bt.b;

  TileLoader<TA, kBM> la;
  TileLoader<TB, kBN> lb;
  la.init(p.a_src, m0, p.M, tid);
  lb.init(p.b_src, n0, p.N, tid);
  auto a_tile = [&](int s) { return reinterpret_cast<TA*>(smem + s * kStageBytes<TA, TB>); };
  auto b_tile = [&](int s) { return reinterpret_cast<TB*>(smem + s * kStageBytes<TA, TB> + kATileBytes<TA>); };
  auto load_stage = [&](int s, int k0) {
    la.template load<kAsync>(a_tile(s), a, p.a_src, k0, p.K);
    lb.template load<kAsync>(b_tile(s), b, p.b_src, k0, p.b_k);
  };

  const int wm = (warp / kWarpsN) * kWarpM, wn = (warp % kWarpsN) * kWarpN;
  float acc[kMTiles][kNTiles][4];
  for (int i = 0; i < kMTiles; ++i)
    for (int j = 0; j < kNTiles; ++j)
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  const int k_tiles = (p.K + kBK - 1) / kBK;
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) load_stage(s, s * kBK);
    simt::cp_async_commit();  // empty groups keep the count uniform
  }
  for (int kt = 0; kt < k_tiles; ++kt) {
    // Tile kt has landed (for this thread; the barrier makes it everyone's),
    // and every warp is done with tile kt - 1, whose stage is refilled next.
    simt::cp_async_wait<kStages - 2>();
    simt::sync_threads();
    const int next = kt + kStages - 1;
    if (next < k_tiles) load_stage(next % kStages, next * kBK);
    simt::cp_async_commit();

    const TA* as = a_tile(kt % kStages);
    const TB* bs = b_tile(kt % kStages);
    for (int kk = 0; kk < kBK; kk += 16) {
      uint32_t ah[kMTiles][4], al[kMTiles][4], bh[kNTiles][2], bl[kNTiles][2];
      for (int i = 0; i < kMTiles; ++i) load_a<kPasses, Ops>(ah[i], al[i], as, wm + 16 * i, kk, lane);
      for (int j = 0; j < kNTiles; j += 2) load_b2<kPasses, Ops>(&bh[j], &bl[j], bs, wn + 8 * j, kk, lane);
      for (int i = 0; i < kMTiles; ++i)
        for (int j = 0; j < kNTiles; ++j) {
          // Small terms first, then hi*hi.
          if constexpr (kPasses == 3) {
            Ops::mma(acc[i][j], al[i], bh[j]);
            Ops::mma(acc[i][j], ah[i], bl[j]);
          }
          Ops::mma(acc[i][j], ah[i], bh[j]);
        }
    }
  }
  simt::cp_async_wait<0>();  // no copy may outlive the block

  float* c = p.c + c_off;
  const float* residual = p.residual ? p.residual + c_off : nullptr;
  const int g = lane >> 2, q = lane & 3;
  for (int i = 0; i < kMTiles; ++i)
    for (int h = 0; h < 2; ++h) {
      const int row = m0 + wm + 16 * i + g + 8 * h;
      if (kSwiGLU) {
        for (int j = 0; j < kNTiles; j += 2) {
          const int col = (n0 + wn + 8 * j) / 2 + 2 * q;
          const float* a1 = &acc[i][j][2 * h];
          const float* a2 = &acc[i][j + 1][2 * h];
          store_pair(c, residual, nullptr, p.ldc, p.M, p.out_n, row, col, silu(a1[0]) * a2[0], silu(a1[1]) * a2[1]);
        }
      } else {
        for (int j = 0; j < kNTiles; ++j)
          store_pair(c, residual, p.bias, p.ldc, p.M, p.out_n, row, n0 + wn + 8 * j + 2 * q, acc[i][j][2 * h],
                     acc[i][j][2 * h + 1]);
      }
    }
}

// Packs weight rows for gemm_kernel's B: out [rows, kpad] of TB (f32, or
// 16-bit values in packed_k order: bf16, or fp16 with F16Ops), zero past the
// weight; rows = N, or for SwiGLU 2 * round_up(H, 8) rows of W1/W2 in
// interleaved groups of 8. The weights are f32 [n, k] with strides (s0, s1)
// (W2: (s0_2, s1)). kSplit (bf16 only): out holds two such planes, the bf16
// values (hi) and then bf16(w - hi) (lo), the operands of the 3-pass product
// on wgmma, whose B must be 16-bit in shared memory.
template <typename TB, typename Ops = simt::Bf16Ops, bool kSplit = false>
VL_GLOBAL void pack_weight_rows(const float* w1, const float* w2, int64_t s0, int64_t s0_2, int64_t s1, int n, int k,
                                int64_t rows, int kpad, bool swiglu, TB* out) {
  const int64_t total = rows * kpad, step = static_cast<int64_t>(simt::grid_dim_x()) * simt::block_dim_x();
  for (int64_t idx = static_cast<int64_t>(simt::block_x()) * simt::block_dim_x() + simt::thread_x(); idx < total;
       idx += step) {
    const int64_t j = idx / kpad;
    const int s = static_cast<int>(idx % kpad);
    const int kk = sizeof(TB) == 2 ? packed_k(s) : s;
    const float* w = w1;
    int64_t row = j, rs = s0;
    if (swiglu) {
      const bool second = (j >> 3) & 1;
      w = second ? w2 : w1;
      rs = second ? s0_2 : s0;
      row = (j >> 4) * 8 + (j & 7);
    }
    const float v = row < n && kk < k ? w[row * rs + kk * s1] : 0.0f;
    static_assert(!kSplit || (sizeof(TB) == 2 && std::is_same<Ops, simt::Bf16Ops>::value), "the split is bf16");
    if constexpr (kSplit) {
      out[idx] = f32_to_bf16(v);
      out[total + idx] = f32_to_bf16(split_rest(v, bf16_to_f32(out[idx])));
    } else if constexpr (sizeof(TB) == 2) {
      out[idx] = std::is_same<Ops, simt::F16Ops>::value ? f32_to_f16(v) : f32_to_bf16(v);
    } else {
      out[idx] = v;
    }
  }
}

}  // namespace gemm
}  // namespace kernels
}  // namespace cuda
}  // namespace vl
