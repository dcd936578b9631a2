// The Hopper (sm_90a) GEMM of the packed 16-bit linears: C[M, N] = A[M, K]
// * B[N, K]^T (+bias)(+residual), or the SwiGLU gate, with f32 activations A
// and packed bf16 / fp16 weight rows B (gemm_kernel's Params<float,
// uint16_t, Rows>, same results up to the order of f32 sums). Kernel source
// shared by nvcc (compiled for sm_90a) and the SIMT runner.
//
// Block tile 128x256, K step 64, two warpgroups (256 threads), each a 64x256
// accumulator of wgmma.m64n256k16: A from registers, B from shared memory.
// kPasses = 3 multiplies f32 operands as the bf16 split of gemm.cuh (lo*hi +
// hi*lo + hi*hi): A is split as its fragments load, B comes as two packed
// planes (hi, lo; pack_weight_rows<..., kSplit>), and the tile is 128x128 so
// a stage holds both B planes in the same bytes as one 256-row plane.
//   A: f32 in shared memory (padded rows, as gemm_kernel), converted to
//      16-bit fragments with ldmatrix and cvt as they are loaded (the RS form
//      of wgmma takes the mma.m16n8k16 A fragment per warp), so activations
//      never need a 16-bit copy in global memory.
//   B: the packed weight rows, copied by cp.async straight into the no-
//      swizzle core-matrix layout wgmma reads (core matrix (n/8, k/8) at
//      ((n/8)*8 + k/8) * 128 bytes of the stage): thread c of a stage writes
//      16 bytes at 16c, so the stores are conflict-free, and a warp reads
//      64-byte runs of 8 weight rows. The packed rows hold k in the permuted
//      order of gemm.cuh (packed_k), which is the order the f32 ldmatrix
//      fragments of A have: the products pair up as they must.
// Stages: a 3-deep cp.async ring. Each K step: wait for the step's copies,
// fence them into the async proxy (wgmma reads shared memory there), one
// barrier (which also tells every thread the previous step's wgmmas are
// done, so its stage may be refilled), refill, then 4 x (load a k16 slice
// of A fragments, wgmma), commit, wait.
#pragma once
#include <cstdint>
#include <type_traits>

#include "cuda/kernels/gemm.cuh"
#include "cuda/simt.cuh"

namespace vl {
namespace cuda {
namespace kernels {
namespace gemm {

constexpr int kWgBM = 128, kWgBK = 64, kWgStages = 3, kWgThreads = 256;
// N tile: 256 for one 16-bit product, 128 for the 3-pass split.
template <int kPasses>
constexpr int kWgBN = kPasses == 3 ? 128 : 256;
constexpr int kWgATileBytes = kWgBM * kLd<float, kWgBK> * 4;
// B planes of a stage (hi, and lo for the split), 32 KiB either way.
constexpr int kWgBTileBytes = 256 * kWgBK * 2;
constexpr int kWgStageBytes = kWgATileBytes + kWgBTileBytes;
static_assert(kWgBN<1> * kWgBK * 2 == kWgBTileBytes && 2 * kWgBN<3> * kWgBK * 2 == kWgBTileBytes, "B planes fill a stage");
// Dynamic shared memory of gemm_wgmma_kernel (3 x 66 KiB: within sm_90's 227 KiB).
constexpr int kWgSmemBytes = kWgStages * kWgStageBytes;
// Core matrices of a B stage: 128 bytes each, 8 along k (lbo) per 8 rows (sbo).
constexpr uint32_t kWgLbo = 128, kWgSbo = 128 * (kWgBK / 8);
static_assert(kWgThreads == kThreads, "the A tile loader is gemm_kernel's");
static_assert(kWgATileBytes % 16 == 0, "B stages start 16-byte aligned");

// The loader of one B plane of kBN rows: chunk c (16 bytes = 8 k of one row)
// is row 8*(c/64) + c%8, k 8*((c/8)%8), stored at 16c. Thread tid copies
// chunks tid + 256i: rows nb + 32i (nb its first), all at the same k.
template <int kBN>
struct WgmmaBLoader {
  static constexpr int kIters = kBN * kWgBK / 8 / kWgThreads;
  static_assert(kWgThreads == 256 && kWgBK == 64, "the chunk -> (row, k) map above");
  int64_t first_row, row_step;  // element offsets from B
  int rows_left, kc;

  VL_DEVICE void init(int64_t ld, int n0, int rows, int tid) {
    const int nb = n0 + 8 * (tid >> 6) + (tid & 7);
    kc = ((tid >> 3) & 7) * 8;
    first_row = static_cast<int64_t>(nb) * ld;
    row_step = 32 * ld;
    rows_left = rows - nb;
  }
  VL_DEVICE void load(unsigned char* stage, const uint16_t* base, int k0, int b_k, int tid) const {
    const int k = k0 + kc;
    for (int i = 0; i < kIters; ++i) {
      int bytes = 32 * i < rows_left ? (b_k - k) * 2 : 0;
      bytes = bytes < 0 ? 0 : bytes > 16 ? 16 : bytes;
      simt::cp_async_16(stage + (tid + i * kWgThreads) * 16, bytes ? base + first_row + i * row_step + k : base, bytes);
    }
  }
};

// grid.x = m_tiles * n_tiles (tiles of kWgBM x kWgBN<kPasses>), blockDim.x =
// kWgThreads, dynamic shared memory kWgSmemBytes. kPasses, kSwiGLU and Ops as
// in gemm_kernel; with 3 passes, B's lo plane follows its hi plane (p.N rows
// of p.b_src.ld each). The launcher guarantees cp.async alignment and batches = 1.
template <int kPasses, bool kSwiGLU, typename Ops>
VL_GLOBAL void VL_LAUNCH_BOUNDS(kWgThreads) gemm_wgmma_kernel(Params<float, uint16_t, Rows> p) {
  static_assert(kPasses == 1 || (kPasses == 3 && std::is_same<Ops, simt::Bf16Ops>::value), "the split is bf16");
  constexpr int kBN = kWgBN<kPasses>, kPlaneBytes = kBN * kWgBK * 2;
  unsigned char* smem = simt::dynamic_shared();
  const int tid = simt::thread_x(), lane = simt::lane(), warp = simt::warp();
  const BlockTile<float, uint16_t> bt(p, kWgBM, kBN);
  const int m0 = bt.m0, n0 = bt.n0;

  TileLoader<float, kWgBM, kWgBK> la;
  WgmmaBLoader<kBN> lb;
  const int64_t lo_plane = static_cast<int64_t>(p.N) * p.b_src.ld;
  la.init(p.a_src, m0, p.M, tid);
  lb.init(p.b_src.ld, n0, p.N, tid);
  auto a_tile = [&](int s) { return reinterpret_cast<float*>(smem + s * kWgStageBytes); };
  auto b_tile = [&](int s) { return smem + s * kWgStageBytes + kWgATileBytes; };
  auto load_stage = [&](int s, int k0) {
    la.template load<true>(a_tile(s), bt.a, p.a_src, k0, p.K);
    lb.load(b_tile(s), bt.b, k0, p.b_k, tid);
    if constexpr (kPasses == 3) lb.load(b_tile(s) + kPlaneBytes, bt.b + lo_plane, k0, p.b_k, tid);
  };

  // Warp w of warpgroup wg: rows 64*wg + 16*(w%4) of the tile.
  const int wm = 64 * (warp >> 2) + 16 * (warp & 3);
  float acc[kBN / 2];
  VL_UNROLL
  for (int i = 0; i < kBN / 2; ++i) acc[i] = 0.0f;

  const int k_tiles = (p.K + kWgBK - 1) / kWgBK;
  for (int s = 0; s < kWgStages - 1; ++s) {
    if (s < k_tiles) load_stage(s, s * kWgBK);
    simt::cp_async_commit();
  }
  for (int kt = 0; kt < k_tiles; ++kt) {
    simt::cp_async_wait<kWgStages - 2>();
    simt::fence_proxy_async();
    simt::sync_threads();
    const int next = kt + kWgStages - 1;
    if (next < k_tiles) load_stage(next % kWgStages, next * kWgBK);
    simt::cp_async_commit();

    const float* as = a_tile(kt % kWgStages);
    const unsigned char* bs = b_tile(kt % kWgStages);
    // Each k16 slice's A fragments load (and convert) while the previous
    // slice's wgmma runs: distinct registers, ordered by a fence each.
    uint32_t af[kWgBK / 16][4], al[kWgBK / 16][4];
    VL_UNROLL
    for (int s = 0; s < kWgBK / 16; ++s) {
      load_a<kPasses, Ops, kWgBK>(af[s], al[s], as, wm, 16 * s, lane);
      simt::wgmma_fence();
      const uint64_t hi = simt::wgmma_desc(bs + 2 * s * kWgLbo, kWgLbo, kWgSbo);
      // Small terms first, then hi*hi (as gemm_kernel).
      if constexpr (kPasses == 3) {
        Ops::template wgmma<kBN>(acc, al[s], hi);
        Ops::template wgmma<kBN>(acc, af[s], simt::wgmma_desc(bs + kPlaneBytes + 2 * s * kWgLbo, kWgLbo, kWgSbo));
      }
      Ops::template wgmma<kBN>(acc, af[s], hi);
    }
    simt::wgmma_commit();
    // The stage and af are free again once this step's products are done.
    simt::wgmma_wait<0>();
  }
  simt::cp_async_wait<0>();
  VL_UNROLL
  for (int i = 0; i < kBN / 2; ++i) simt::wgmma_fence_operand(acc[i]);

  float* c = p.c + bt.c_off;
  const float* residual = p.residual ? p.residual + bt.c_off : nullptr;
  const int g = lane >> 2, q = lane & 3;
  VL_UNROLL
  for (int h = 0; h < 2; ++h) {
    const int row = m0 + wm + g + 8 * h;
    VL_UNROLL
    for (int j = 0; j < kBN / 8; j += kSwiGLU ? 2 : 1) {
      const float* v = &acc[4 * j + 2 * h];
      if (kSwiGLU) {
        // Columns 8j.. hold W1's products of 8 hidden units, 8(j+1).. W2's of the same.
        const float* w2 = &acc[4 * (j + 1) + 2 * h];
        store_pair(c, residual, nullptr, p.ldc, p.M, p.out_n, row, (n0 + 8 * j) / 2 + 2 * q, silu(v[0]) * w2[0],
                   silu(v[1]) * w2[1]);
      } else {
        store_pair(c, residual, p.bias, p.ldc, p.M, p.out_n, row, n0 + 8 * j + 2 * q, v[0], v[1]);
      }
    }
  }
}

}  // namespace gemm
}  // namespace kernels
}  // namespace cuda
}  // namespace vl
