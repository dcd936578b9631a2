// The Hopper (sm_90a) GEMM of the packed 16-bit linears: C[M, N] = A[M, K]
// * B[N, K]^T (+bias)(+residual), or the SwiGLU gate, with f32 activations A
// and packed bf16 / fp16 weight rows B (gemm_kernel's Params<float,
// uint16_t, Rows>, same results up to the order of f32 sums). Kernel source
// shared by nvcc (compiled for sm_90a) and the SIMT runner.
//
// Block tile 128x256, K step 64. Warp-specialized: a producer warpgroup
// (one thread of it issuing, few registers) feeds a 3-stage ring of shared-memory stages with TMA, and two consumer
// warpgroups (256 threads) each multiply a 64x256 accumulator with
// wgmma.m64n256k16 (A from registers, B from shared memory). No barrier
// spans the block in the main loop: stage s has a `full` mbarrier (the
// producer's expect_tx, completed by the TMA bytes) and an `empty` one (an
// arrival by every consumer thread once its products on the stage are
// done), so each warpgroup runs on as soon as its data is there and the
// copies of the next two stages overlap the products.
// kPasses = 3 multiplies f32 operands as the bf16 split of gemm.cuh (lo*hi +
// hi*lo + hi*hi): A is split as its fragments load, B comes as two packed
// planes (hi, lo; pack_weight_rows<..., kSplit>), and the tile is 128x128 so
// a stage holds both B planes in the same bytes as one 256-row plane.
//   A: f32, two TMA boxes of 128 rows x 32 floats per stage (128-byte rows,
//      128B-swizzled, so the 8 rows of an ldmatrix matrix sit in distinct
//      banks), converted to 16-bit fragments with ldmatrix and cvt as they
//      are loaded (the RS form of wgmma takes the mma.m16n8k16 A fragment per
//      warp): activations never need a 16-bit copy in global memory.
//   B: the packed weight rows, a TMA box of kBN rows x 64 k per plane
//      (128-byte rows, 128B-swizzled: the K-major layout wgmma_desc_sw128
//      reads). The rows hold k in the permuted order of gemm.cuh
//      (packed_k), the order the f32 ldmatrix fragments of A have, so the
//      products pair up as they must.
// Edges: TMA fills the box past M, N, K (and past b_k in B) with zeros and
// still completes the whole box's bytes, so the expected bytes per stage
// are fixed.
#pragma once
#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda/kernels/gemm.cuh"
#include "cuda/simt.cuh"

namespace vl {
namespace cuda {
namespace kernels {
namespace gemm {

constexpr int kWgBM = 128, kWgBK = 64, kWgStages = 3;
constexpr int kWgConsumers = 256;               // two warpgroups of 64 rows
constexpr int kWgThreads = kWgConsumers + 128;  // and the producer warpgroup
// Registers per thread after setmaxnreg: an SM sub-partition holds 3 of the
// 12 warps (one producer, two consumers): 40 + 2 x 232 = 504 <= 512 per
// lane. The consumers' 128 accumulators fit; 168 (the even split) would
// serialize the wgmmas.
constexpr int kWgProducerRegs = 40, kWgConsumerRegs = 232;
// N tile: 256 for one 16-bit product, 128 for the 3-pass split.
template <int kPasses>
constexpr int kWgBN = kPasses == 3 ? 128 : 256;
constexpr int kWgABoxFloats = 32;                    // k of an A box: one 128-byte row
constexpr int kWgABoxBytes = kWgBM * kWgABoxFloats * 4;  // 16 KiB
constexpr int kWgATileBytes = (kWgBK / kWgABoxFloats) * kWgABoxBytes;
// B planes of a stage (hi, and lo for the split), 32 KiB either way.
constexpr int kWgBTileBytes = 256 * kWgBK * 2;
constexpr int kWgStageBytes = kWgATileBytes + kWgBTileBytes;
static_assert(kWgBN<1> * kWgBK * 2 == kWgBTileBytes && 2 * kWgBN<3> * kWgBK * 2 == kWgBTileBytes, "B planes fill a stage");
static_assert(kWgBK * 2 == 128, "a B box row is the 128-byte swizzle row");
static_assert(kWgABoxBytes % 1024 == 0 && kWgStageBytes % 1024 == 0, "every box starts on the swizzle's 1024-byte period");
// Dynamic shared memory of gemm_wgmma_kernel: the stages (3 x 64 KiB, within
// sm_90's 227 KiB), their full and empty mbarriers, and room to align the
// stages to 1024 bytes.
constexpr int kWgSmemBytes = kWgStages * kWgStageBytes + 2 * kWgStages * 8 + 1024;

// The kernel's argument: gemm_kernel's Params (one batch) and the TMA
// descriptors of its operands (made by make_wgmma_maps).
struct WgmmaParams {
  Params<float, uint16_t, Rows> p;
  simt::TensorMap a_map;  // A [M][lda] f32: dims (K, M), boxes of 32 x 128
  simt::TensorMap b_map;  // B [planes][N][ldb] 16-bit: dims (b_k, N, planes), boxes of 64 x kBN x 1
};

// Fills w's descriptors for its Params (host code). "" on success, else why
// the operands cannot be TMA-copied (rows not 16-byte aligned, ...).
template <int kPasses>
inline std::string make_wgmma_maps(WgmmaParams& w) {
  const Params<float, uint16_t, Rows>& p = w.p;
  simt::TensorMapSpec a;
  a.base = p.a, a.elem_bytes = 4, a.rank = 2;
  // K = 0 issues no copy, but a descriptor's dimensions are at least 1.
  a.dims[0] = static_cast<uint64_t>(p.K > 0 ? p.K : 1), a.dims[1] = static_cast<uint64_t>(p.M);
  a.strides[0] = static_cast<uint64_t>(p.a_src.ld) * 4;
  a.box[0] = kWgABoxFloats, a.box[1] = kWgBM;
  std::string why = simt::encode_tensor_map(&w.a_map, a);
  if (!why.empty()) return "A: " + why;
  simt::TensorMapSpec b;
  b.base = p.b, b.elem_bytes = 2, b.rank = 3;
  b.dims[0] = static_cast<uint64_t>(p.b_k > 0 ? p.b_k : 1), b.dims[1] = static_cast<uint64_t>(p.N), b.dims[2] = kPasses == 3 ? 2 : 1;
  b.strides[0] = static_cast<uint64_t>(p.b_src.ld) * 2, b.strides[1] = b.strides[0] * static_cast<uint64_t>(p.N);
  b.box[0] = kWgBK, b.box[1] = kWgBN<kPasses>, b.box[2] = 1;
  why = simt::encode_tensor_map(&w.b_map, b);
  return why.empty() ? why : "B: " + why;
}

// An A fragment (16 rows x 16 k) at row m, k step kk of a stage's A boxes:
// the addresses of load_a, 128B-swizzled (chunk c of row r at c ^ r % 8).
template <int kPasses, typename Ops>
VL_DEVICE void load_a_sw128(uint32_t hi[4], uint32_t lo[4], const unsigned char* tile, int m, int kk, int lane) {
  const int i = lane >> 3, row = m + (lane & 7) + (i & 1) * 8;
  const unsigned char* box = tile + (kk / kWgABoxFloats) * kWgABoxBytes + row * 128;
  const int chunk = (kk % kWgABoxFloats) / 4 + (i >> 1);  // 16-byte chunk of the first load; the second is 2 further
  const auto at = [&](int c) { return reinterpret_cast<const float*>(box + ((c ^ (row & 7)) << 4)); };
  load_a_f32<kPasses, Ops>(hi, lo, at(chunk), at(chunk + 2));
}

// grid.x = m_tiles * n_tiles (tiles of kWgBM x kWgBN<kPasses>), blockDim.x =
// kWgThreads, dynamic shared memory kWgSmemBytes. kPasses, kSwiGLU and Ops as
// in gemm_kernel; with 3 passes, B's lo plane follows its hi plane (p.N rows
// of p.b_src.ld each).
template <int kPasses, bool kSwiGLU, typename Ops>
VL_GLOBAL void VL_LAUNCH_BOUNDS_1(kWgThreads) gemm_wgmma_kernel(VL_GRID_CONSTANT WgmmaParams w) {
  static_assert(kPasses == 1 || (kPasses == 3 && std::is_same<Ops, simt::Bf16Ops>::value), "the split is bf16");
  constexpr int kBN = kWgBN<kPasses>, kPlaneBytes = kBN * kWgBK * 2;
  constexpr uint32_t kStageTx = kWgATileBytes + (kPasses == 3 ? 2 : 1) * kPlaneBytes;
  const Params<float, uint16_t, Rows>& p = w.p;
  // The swizzle pattern repeats every 1024 bytes of the shared address: the stages start on it.
  unsigned char* smem = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(simt::dynamic_shared()) + 1023) & ~uintptr_t{1023});
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + kWgStages * kWgStageBytes);
  uint64_t* empty = full + kWgStages;
  const int tid = simt::thread_x(), lane = simt::lane(), warp = simt::warp();
  const BlockTile<float, uint16_t> bt(p, kWgBM, kBN);
  const int m0 = bt.m0, n0 = bt.n0;
  const int k_tiles = (p.K + kWgBK - 1) / kWgBK;

  if (tid == 0) {
    for (int s = 0; s < kWgStages; ++s) {
      simt::mbarrier_init(&full[s], 1);
      simt::mbarrier_init(&empty[s], kWgConsumers);
    }
    simt::fence_mbarrier_init();
  }
  simt::sync_threads();

  if (tid >= kWgConsumers) {
    // The producer: one thread issues every copy. Round r of stage s reuses
    // it once the consumers have released round r - 1 (phase parity (r-1) & 1).
    simt::setmaxnreg_dec<kWgProducerRegs>();
    if (tid == kWgConsumers) {
      for (int kt = 0; kt < k_tiles; ++kt) {
        const int s = kt % kWgStages, k0 = kt * kWgBK;
        if (kt >= kWgStages) simt::mbarrier_wait(&empty[s], ((kt / kWgStages) - 1) & 1);
        unsigned char* stage = smem + s * kWgStageBytes;
        simt::mbarrier_arrive_expect_tx(&full[s], kStageTx);
        for (int j = 0; j < kWgBK / kWgABoxFloats; ++j)
          simt::tma_load_3d(stage + j * kWgABoxBytes, &w.a_map, k0 + j * kWgABoxFloats, m0, 0, &full[s]);
        for (int plane = 0; plane < (kPasses == 3 ? 2 : 1); ++plane)
          simt::tma_load_3d(stage + kWgATileBytes + plane * kPlaneBytes, &w.b_map, k0, n0, plane, &full[s]);
      }
    }
    return;
  }

  simt::setmaxnreg_inc<kWgConsumerRegs>();
  // Warp w of warpgroup wg: rows 64*wg + 16*(w%4) of the tile.
  const int wm = 64 * (warp >> 2) + 16 * (warp & 3);
  float acc[kBN / 2];
  VL_UNROLL
  for (int i = 0; i < kBN / 2; ++i) acc[i] = 0.0f;

  for (int kt = 0; kt < k_tiles; ++kt) {
    const int s = kt % kWgStages;
    simt::mbarrier_wait(&full[s], (kt / kWgStages) & 1);
    const unsigned char* as = smem + s * kWgStageBytes;
    const unsigned char* bs = as + kWgATileBytes;
    // Each k16 slice's A fragments load (and convert) while the previous
    // slice's wgmma runs: distinct registers, ordered by a fence each.
    uint32_t af[kWgBK / 16][4], al[kWgBK / 16][4];
    VL_UNROLL
    for (int i = 0; i < kWgBK / 16; ++i) {
      load_a_sw128<kPasses, Ops>(af[i], al[i], as, wm, 16 * i, lane);
      simt::wgmma_fence();
      const uint64_t hi = simt::wgmma_desc_sw128(bs + 32 * i);
      // Small terms first, then hi*hi (as gemm_kernel).
      if constexpr (kPasses == 3) {
        Ops::template wgmma<kBN>(acc, al[i], hi);
        Ops::template wgmma<kBN>(acc, af[i], simt::wgmma_desc_sw128(bs + kPlaneBytes + 32 * i));
      }
      Ops::template wgmma<kBN>(acc, af[i], hi);
    }
    simt::wgmma_commit();
    // The stage and af are free again once this step's products are done.
    simt::wgmma_wait<0>();
    simt::mbarrier_arrive(&empty[s]);
  }
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
