// A tensor-core GEMM tile kernel: C[M, N] = A[M, K] * B[N, K]^T with bf16
// inputs (raw bits, row-major) and f32 accumulation and output. A block of 4
// warps computes a 32x16 tile of C; each warp one 16x8 mma.m16n8k16 tile per
// K step of 16, A fragments through ldmatrix, B fragments read as the .col
// layout needs them (B's rows are C's columns). Edges are zero-padded in
// shared memory, so any M, N, K work. The baseline the pipelined kernels are
// checked against; kernel source shared by nvcc and the SIMT runner.
#pragma once
#include <cstdint>

#include "cuda/simt.cuh"

namespace vl {
namespace cuda {
namespace kernels {

constexpr int kMmaTileM = 32, kMmaTileN = 16, kMmaThreads = 128;

// grid = (ceil(N / 16), ceil(M / 32)), blockDim.x = 128.
VL_GLOBAL void gemm_bf16_mma(const uint16_t* VL_RESTRICT a, const uint16_t* VL_RESTRICT b, float* VL_RESTRICT c, int M,
                             int N, int K) {
  // Rows of 16 bf16 (32 bytes): every ldmatrix row address is 16-byte aligned.
  VL_SHARED_ALIGNED(16) uint16_t as[kMmaTileM][16];
  VL_SHARED_ALIGNED(16) uint16_t bs[kMmaTileN][16];
  const int tid = simt::thread_x(), lane = simt::lane(), warp = simt::warp();
  const int m0 = simt::block_y() * kMmaTileM, n0 = simt::block_x() * kMmaTileN;
  const int wm = (warp >> 1) * 16, wn = (warp & 1) * 8;
  const int g = lane >> 2, t = lane & 3;
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int k0 = 0; k0 < K; k0 += 16) {
    for (int i = tid; i < kMmaTileM * 16; i += kMmaThreads) {
      const int r = i / 16, k = i % 16;
      as[r][k] = m0 + r < M && k0 + k < K ? a[static_cast<int64_t>(m0 + r) * K + k0 + k] : uint16_t(0);
    }
    for (int i = tid; i < kMmaTileN * 16; i += kMmaThreads) {
      const int r = i / 16, k = i % 16;
      bs[r][k] = n0 + r < N && k0 + k < K ? b[static_cast<int64_t>(n0 + r) * K + k0 + k] : uint16_t(0);
    }
    simt::sync_threads();
    uint32_t af[4], bf[2];
    // Matrices 0..3 of ldmatrix: rows 0-7 / 8-15 of columns 0-7, then of columns 8-15.
    simt::ldmatrix_x4(af, &as[wm + (lane & 7) + ((lane >> 3) & 1) * 8][(lane >> 4) * 8]);
    bf[0] = bs[wn + g][2 * t] | static_cast<uint32_t>(bs[wn + g][2 * t + 1]) << 16;
    bf[1] = bs[wn + g][2 * t + 8] | static_cast<uint32_t>(bs[wn + g][2 * t + 9]) << 16;
    simt::mma_bf16_m16n8k16(acc, af, bf);
    simt::sync_threads();  // the tiles are overwritten next step
  }
  for (int i = 0; i < 4; ++i) {
    const int row = m0 + wm + g + 8 * (i >> 1), col = n0 + wn + 2 * t + (i & 1);
    if (row < M && col < N) c[static_cast<int64_t>(row) * N + col] = acc[i];
  }
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
