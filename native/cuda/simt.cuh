// The portability layer of the CUDA kernels: thread and block indices,
// shared memory, barriers, warp shuffles and votes, and the tensor-core
// mma/ldmatrix instructions. Under nvcc it maps to CUDA; under a host compiler
// it maps to the SIMT runner of the test suite (native/tests/simt_runner.cc),
// where every thread of a block is a fiber that yields at barriers and warp
// collectives, so the same kernel source runs (slowly) on a machine with no
// GPU and is compared with the CPU backend.
//
// Kernels are written as `VL_GLOBAL void k(...)` with `VL_DEVICE` helpers,
// declare shared memory with `VL_SHARED` (or `VL_SHARED_ALIGNED(bytes)`), and
// use only the functions below.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#define VL_GLOBAL __global__
#define VL_DEVICE __device__ __forceinline__
#define VL_SHARED __shared__
#define VL_SHARED_ALIGNED(n) __shared__ __align__(n)
#define VL_RESTRICT __restrict__

namespace vl {
namespace simt {

VL_DEVICE int thread_x() { return static_cast<int>(threadIdx.x); }
VL_DEVICE int block_x() { return static_cast<int>(blockIdx.x); }
VL_DEVICE int block_y() { return static_cast<int>(blockIdx.y); }
VL_DEVICE int block_dim_x() { return static_cast<int>(blockDim.x); }
VL_DEVICE int grid_dim_x() { return static_cast<int>(gridDim.x); }
VL_DEVICE int lane() { return static_cast<int>(threadIdx.x) & 31; }
VL_DEVICE int warp() { return static_cast<int>(threadIdx.x) >> 5; }
VL_DEVICE void sync_threads() { __syncthreads(); }
// Full-warp collectives (every lane of the warp takes part).
VL_DEVICE float shfl_xor(float v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
VL_DEVICE float shfl(float v, int src_lane) { return __shfl_sync(0xffffffffu, v, src_lane); }
VL_DEVICE unsigned ballot(bool p) { return __ballot_sync(0xffffffffu, p); }

// acc += A * B on tensor cores, one m16n8k16 tile per warp: A 16x16 bf16
// (row-major fragment, 4 registers of bf16 pairs, the lower index in the low
// half), B 16x8 bf16 (column-major fragment, 2 registers), acc 16x8 f32 (4
// registers). With g = lane/4 and t = lane%4, element i of a lane is
//   A: row g + 8*((i/2)%2), column 2t + i%2 + 8*(i/4)    (i < 8)
//   B: row (k) 2t + i%2 + 8*(i/2), column (n) g           (i < 4)
//   acc: row g + 8*(i/2), column 2t + i%2                 (i < 4)
// as in the PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating point type").
VL_DEVICE void mma_bf16_m16n8k16(float acc[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// The same with IEEE fp16 operands (same fragment layouts).
VL_DEVICE void mma_f16_m16n8k16(float acc[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Four 8x8 b16 matrices from shared memory: lanes 8i..8i+7 give the row
// addresses of matrix i; register i of a lane gets, of matrix i, row lane/4,
// columns 2*(lane%4) and 2*(lane%4)+1.
VL_DEVICE void ldmatrix_x4(uint32_t r[4], const void* row_address) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(row_address));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}


// ---- GEMM pipeline: dynamic shared memory, cp.async, bf16 packing ----
#define VL_LAUNCH_BOUNDS(threads) __launch_bounds__(threads)

// The block's dynamic shared memory (the launch's third <<<>>> argument;
// above 48 KiB the kernel needs cudaFuncAttributeMaxDynamicSharedMemorySize).
VL_DEVICE unsigned char* dynamic_shared() {
  extern __shared__ __align__(128) unsigned char vl_dynamic_shared[];
  return vl_dynamic_shared;
}

// 16 bytes global -> shared without staging in registers (sm_80
// cp.async.cg, L2 only: the tiles are reused from shared memory, not L1).
// Only the first src_bytes (0..16) are read, the rest of the 16 are zeroed, so
// tile edges need no branches; both addresses must be 16-byte aligned.
VL_DEVICE void cp_async_16(void* smem, const void* gmem, int src_bytes) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes) : "memory");
}
// Closes the group of this thread's cp.async issued since the last commit.
VL_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are in flight;
// other threads' copies are visible only after a following sync_threads.
template <int N>
VL_DEVICE void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Two floats rounded (to nearest even) to bf16 in one register, `lo` in the
// low half: the operand order of mma fragments.
VL_DEVICE uint32_t pack_bf16x2(float lo, float hi) {
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
// The same rounded to fp16 (nearest even, beyond 65504 to +-Inf).
VL_DEVICE uint32_t pack_f16x2(float lo, float hi) {
  uint32_t r;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

// ---- attention: transposed ldmatrix ----
// ldmatrix_x4 with each 8x8 matrix transposed: register i of a lane gets, of
// matrix i, rows 2*(lane%4) and 2*(lane%4)+1 of column lane/4 (the .col B
// fragment of mma for a row-major [k][n] tile, e.g. V in P·V).
VL_DEVICE void ldmatrix_x4_trans(uint32_t r[4], const void* row_address) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(row_address));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}
}  // namespace simt
}  // namespace vl

#else  // the SIMT runner

#define VL_GLOBAL inline
#define VL_DEVICE inline
// One block runs at a time in the runner, so a function-local static is the block's shared memory.
#define VL_SHARED static
#define VL_SHARED_ALIGNED(n) alignas(n) static
#define VL_RESTRICT

namespace vl {
namespace simt {

int thread_x();
int block_x();
int block_y();
int block_dim_x();
int grid_dim_x();
inline int lane() { return thread_x() & 31; }
inline int warp() { return thread_x() >> 5; }
void sync_threads();
float shfl_xor(float v, int mask);
float shfl(float v, int src_lane);
unsigned ballot(bool p);
void mma_bf16_m16n8k16(float acc[4], const uint32_t a[4], const uint32_t b[2]);
void mma_f16_m16n8k16(float acc[4], const uint32_t a[4], const uint32_t b[2]);
void ldmatrix_x4(uint32_t r[4], const void* row_address);

// ---- GEMM pipeline: dynamic shared memory, cp.async, bf16 packing ----
#define VL_LAUNCH_BOUNDS(threads)

// The runner's dynamic shared memory: the largest a block may have (H100),
// filled with 0xff (NaN as f32 and bf16) before each block, so a kernel that
// reads what it never wrote fails its checks.
constexpr int kMaxDynamicShared = 227 * 1024;
unsigned char* dynamic_shared();
// cp.async in the runner is deferred, the latest a GPU may complete it: the
// bytes land at the cp_async_wait that retires their group, so a read before
// the wait sees the old contents, as it can on a GPU.
void cp_async_16(void* smem, const void* gmem, int src_bytes);
void cp_async_commit();
void cp_async_wait_groups(int n);
template <int N>
inline void cp_async_wait() {
  cp_async_wait_groups(N);
}
uint32_t pack_bf16x2(float lo, float hi);
uint32_t pack_f16x2(float lo, float hi);

// ---- attention: transposed ldmatrix ----
void ldmatrix_x4_trans(uint32_t r[4], const void* row_address);

}  // namespace simt
}  // namespace vl

#endif

namespace vl {
namespace simt {

// The 16-bit operand format of a tensor-core product, for kernels templated
// on it: pack rounds two floats into an mma operand register (nearest even,
// `lo` in the low half), mma multiplies such registers (f32 accumulation).
struct Bf16Ops {
  VL_DEVICE static uint32_t pack(float lo, float hi) { return pack_bf16x2(lo, hi); }
  VL_DEVICE static void mma(float acc[4], const uint32_t a[4], const uint32_t b[2]) { mma_bf16_m16n8k16(acc, a, b); }
};
// fp16: 3 more mantissa bits than bf16, but beyond 65504 an operand is +-Inf.
struct F16Ops {
  VL_DEVICE static uint32_t pack(float lo, float hi) { return pack_f16x2(lo, hi); }
  VL_DEVICE static void mma(float acc[4], const uint32_t a[4], const uint32_t b[2]) { mma_f16_m16n8k16(acc, a, b); }
};

}  // namespace simt
}  // namespace vl
