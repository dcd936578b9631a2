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
#include <string>

#if defined(__CUDACC__)
#include <cuda.h>  // CUtensorMap (a type only: the driver is reached through cudart)
#include <cuda_runtime.h>
#define VL_GLOBAL __global__
#define VL_DEVICE __device__ __forceinline__
#define VL_SHARED __shared__
#define VL_SHARED_ALIGNED(n) __shared__ __align__(n)
#define VL_RESTRICT __restrict__
// A kernel parameter whose address the kernel takes (a TMA descriptor in it).
#define VL_GRID_CONSTANT const __grid_constant__
// Unrolls a loop whose induction variable indexes a register array (which
// must not spill to local memory, e.g. wgmma accumulators).
#define VL_UNROLL _Pragma("unroll")

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
// One block per SM, which fixes the register count at entry: a kernel that
// moves registers between warpgroups (setmaxnreg) needs it, or ptxas may
// ignore setmaxnreg (its C7508 note).
#define VL_LAUNCH_BOUNDS_1(threads) __launch_bounds__(threads, 1)

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

// ---- Hopper: warpgroup MMA (wgmma), sm_90a only ----
// A warpgroup is 4 consecutive warps (128 threads). wgmma.mma_async
// m64nNk16 (wgmma_bf16<N>, wgmma_f16<N>) multiplies A (64x16, from registers:
// warp w of the group holds rows 16w..16w+15 in the fragment layout of
// mma_bf16_m16n8k16's A) by B (16xN, from shared memory through a matrix
// descriptor) into acc (64xN f32, N/2 registers; a thread holds, of its
// warp's 16 rows, element 4j + 2h + e at row
// g + 8h, column 8j + 2t + e, with g = lane/4 and t = lane%4). It is
// asynchronous: issue after wgmma_fence, close a group with wgmma_commit, and
// touch acc only after a wgmma_wait that retires the group (PTX ISA,
// "Asynchronous Warpgroup Level Matrix Multiply-Accumulate Instructions").
//
// B descriptors (no swizzle, K-major): B is N/8 x 2 "core matrices" of 8
// rows (n) x 16 bytes (8 k) each, 128 contiguous bytes with row r at 16r;
// `lbo` is the byte distance from a core matrix to the next along k, `sbo`
// to the next along n. Bits: 0-13 address >> 4, 16-29 lbo >> 4, 32-45 sbo >>
// 4, 62-63 swizzle mode (0: none).
VL_DEVICE uint32_t smem_address(const void* p) { return static_cast<unsigned>(__cvta_generic_to_shared(p)); }

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define VL_SM90A_ASM(...) asm volatile(__VA_ARGS__)
#else
// Compiled for another architecture: the launchers never run these kernels there.
#define VL_SM90A_ASM(...) __trap()
#endif

// Orders this thread's register writes (A fragments, acc) before the wgmma that reads them.
VL_DEVICE void wgmma_fence() { VL_SM90A_ASM("wgmma.fence.sync.aligned;\n" ::: "memory"); }
VL_DEVICE void wgmma_commit() { VL_SM90A_ASM("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Waits until at most N of the warpgroup's committed groups are in flight.
template <int N>
VL_DEVICE void wgmma_wait() {
  VL_SM90A_ASM("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Makes this thread's earlier shared-memory writes (cp.async included)
// visible to the async proxy, where wgmma reads its shared operands.
VL_DEVICE void fence_proxy_async() { VL_SM90A_ASM("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Keeps the compiler from moving reads of an accumulator across a wgmma_wait.
VL_DEVICE void wgmma_fence_operand(float& r) { asm volatile("" : "+f"(r)::"memory"); }

// ---- Hopper: mbarriers and the tensor memory accelerator (TMA) ----
// An mbarrier (8 bytes of shared memory) completes a phase when `count`
// arrivals and the transaction bytes it was told to expect (expect_tx) have
// all come; waiters name the phase by its parity. TMA copies a box of a
// tensor (a TensorMap made on the host by encode_tensor_map) into shared
// memory, 128B-swizzled, zero past the tensor's edges, and completes its
// bytes on an mbarrier (PTX ISA, "cp.async.bulk.tensor", "mbarrier").
#if CUDA_VERSION >= 12000
using TensorMap = CUtensorMap;
#else
struct alignas(64) TensorMap {  // toolkits before 12.0 have no TMA: never encoded, never launched
  uint64_t opaque[16];
};
#endif

VL_DEVICE void mbarrier_init(uint64_t* bar, int count) {
  VL_SM90A_ASM("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_address(bar)), "r"(count) : "memory");
}
// Makes the initialized barriers visible to the async proxy (TMA's completions).
VL_DEVICE void fence_mbarrier_init() { VL_SM90A_ASM("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
VL_DEVICE void mbarrier_arrive(uint64_t* bar) {
  VL_SM90A_ASM("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_address(bar)) : "memory");
}
// Expects `bytes` more transaction bytes in the current phase, and arrives.
VL_DEVICE void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  VL_SM90A_ASM("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_address(bar)), "r"(bytes) : "memory");
}
// True once the phase of parity `parity` has completed (the hardware may suspend the thread a while first).
VL_DEVICE bool mbarrier_try_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  VL_SM90A_ASM(
      "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }\n"
      : "=r"(done)
      : "r"(smem_address(bar)), "r"(parity)
      : "memory");
  return done != 0;
}
// The box at coordinates (c0, c1, c2) (elements; innermost first) of `map`
// into shared memory at dst (1024-byte aligned), its bytes completed on bar.
VL_DEVICE void tma_load_3d(void* dst, const TensorMap* map, int c0, int c1, int c2, uint64_t* bar) {
  VL_SM90A_ASM(
      "cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(
          smem_address(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(smem_address(bar))
      : "memory");
}

// `bytes` (a multiple of 16) contiguous bytes global -> shared (both 16-byte
// aligned) by the same engine, completed on bar like a TMA box.
VL_DEVICE void bulk_load(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  VL_SM90A_ASM("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(smem_address(dst)),
               "l"(src), "r"(bytes), "r"(smem_address(bar))
               : "memory");
}

// Named barriers (ids 1..15; 0 is sync_threads'): `threads` threads (a
// multiple of 32) complete one. named_barrier_sync counts this thread and
// waits for the rest; named_barrier_arrive counts it and goes on (a
// producer's signal to threads that sync).
template <int kThreads>
VL_DEVICE void named_barrier_sync(int id) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "n"(kThreads) : "memory");
}
template <int kThreads>
VL_DEVICE void named_barrier_arrive(int id) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "n"(kThreads) : "memory");
}

// Warp specialization: a warpgroup (all 128 threads, converged) hands
// registers back (dec) or takes more (inc) up to N per thread, within the
// SM's file; ptxas allocates the code that follows for the new count.
template <int N>
VL_DEVICE void setmaxnreg_dec() {
  VL_SM90A_ASM("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
VL_DEVICE void setmaxnreg_inc() {
  VL_SM90A_ASM("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

// The m64nNk16 products for N = 32, 64, 96, 128, 256 (16, 32, 48, 64, 128
// accumulator registers). scale-d 1 (accumulate), A and B not negated, B
// not transposed (K-major). Register lists: %0.. are acc, then A, then B's descriptor.
#define VL_WGMMA_R16 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
#define VL_WGMMA_A16 "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3]), "+f"(acc[4]), "+f"(acc[5]), "+f"(acc[6]), "+f"(acc[7]), \
  "+f"(acc[8]), "+f"(acc[9]), "+f"(acc[10]), "+f"(acc[11]), "+f"(acc[12]), "+f"(acc[13]), "+f"(acc[14]), "+f"(acc[15])
#define VL_WGMMA_R32 VL_WGMMA_R16 ", " "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define VL_WGMMA_A32 VL_WGMMA_A16, "+f"(acc[16]), "+f"(acc[17]), "+f"(acc[18]), "+f"(acc[19]), "+f"(acc[20]), "+f"(acc[21]), "+f"(acc[22]), "+f"(acc[23]), \
  "+f"(acc[24]), "+f"(acc[25]), "+f"(acc[26]), "+f"(acc[27]), "+f"(acc[28]), "+f"(acc[29]), "+f"(acc[30]), "+f"(acc[31])
#define VL_WGMMA_R48 VL_WGMMA_R32 ", " "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47"
#define VL_WGMMA_A48 VL_WGMMA_A32, "+f"(acc[32]), "+f"(acc[33]), "+f"(acc[34]), "+f"(acc[35]), "+f"(acc[36]), "+f"(acc[37]), "+f"(acc[38]), "+f"(acc[39]), \
  "+f"(acc[40]), "+f"(acc[41]), "+f"(acc[42]), "+f"(acc[43]), "+f"(acc[44]), "+f"(acc[45]), "+f"(acc[46]), "+f"(acc[47])
#define VL_WGMMA_R64 VL_WGMMA_R48 ", " "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define VL_WGMMA_A64 VL_WGMMA_A48, "+f"(acc[48]), "+f"(acc[49]), "+f"(acc[50]), "+f"(acc[51]), "+f"(acc[52]), "+f"(acc[53]), "+f"(acc[54]), "+f"(acc[55]), \
  "+f"(acc[56]), "+f"(acc[57]), "+f"(acc[58]), "+f"(acc[59]), "+f"(acc[60]), "+f"(acc[61]), "+f"(acc[62]), "+f"(acc[63])
#define VL_WGMMA_R128 VL_WGMMA_R64 ", " "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "  \
  "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "  \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "  \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
#define VL_WGMMA_A128 VL_WGMMA_A64, "+f"(acc[64]), "+f"(acc[65]), "+f"(acc[66]), "+f"(acc[67]), "+f"(acc[68]), "+f"(acc[69]), "+f"(acc[70]), "+f"(acc[71]), \
  "+f"(acc[72]), "+f"(acc[73]), "+f"(acc[74]), "+f"(acc[75]), "+f"(acc[76]), "+f"(acc[77]), "+f"(acc[78]), "+f"(acc[79]), \
  "+f"(acc[80]), "+f"(acc[81]), "+f"(acc[82]), "+f"(acc[83]), "+f"(acc[84]), "+f"(acc[85]), "+f"(acc[86]), "+f"(acc[87]), \
  "+f"(acc[88]), "+f"(acc[89]), "+f"(acc[90]), "+f"(acc[91]), "+f"(acc[92]), "+f"(acc[93]), "+f"(acc[94]), "+f"(acc[95]), \
  "+f"(acc[96]), "+f"(acc[97]), "+f"(acc[98]), "+f"(acc[99]), "+f"(acc[100]), "+f"(acc[101]), "+f"(acc[102]), "+f"(acc[103]), \
  "+f"(acc[104]), "+f"(acc[105]), "+f"(acc[106]), "+f"(acc[107]), "+f"(acc[108]), "+f"(acc[109]), "+f"(acc[110]), "+f"(acc[111]), \
  "+f"(acc[112]), "+f"(acc[113]), "+f"(acc[114]), "+f"(acc[115]), "+f"(acc[116]), "+f"(acc[117]), "+f"(acc[118]), "+f"(acc[119]), \
  "+f"(acc[120]), "+f"(acc[121]), "+f"(acc[122]), "+f"(acc[123]), "+f"(acc[124]), "+f"(acc[125]), "+f"(acc[126]), "+f"(acc[127])
// A and the descriptor follow the accumulators in the operand list.
#define VL_WGMMA_RS(n, regs, tail)                                                                                       \
  template <>                                                                                                            \
  VL_DEVICE void wgmma_bf16<n>(float* acc, const uint32_t a[4], uint64_t b_desc) {                                      \
    VL_SM90A_ASM("wgmma.mma_async.sync.aligned.m64n" #n "k16.f32.bf16.bf16 {" VL_WGMMA_R##regs tail ", 1, 1, 1, 0;\n"  \
                 : VL_WGMMA_A##regs                                                                                      \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc));                                              \
  }                                                                                                                      \
  template <>                                                                                                            \
  VL_DEVICE void wgmma_f16<n>(float* acc, const uint32_t a[4], uint64_t b_desc) {                                       \
    VL_SM90A_ASM("wgmma.mma_async.sync.aligned.m64n" #n "k16.f32.f16.f16 {" VL_WGMMA_R##regs tail ", 1, 1, 1, 0;\n"    \
                 : VL_WGMMA_A##regs                                                                                      \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b_desc));                                              \
  }
template <int N>
VL_DEVICE void wgmma_bf16(float* acc, const uint32_t a[4], uint64_t b_desc);
template <int N>
VL_DEVICE void wgmma_f16(float* acc, const uint32_t a[4], uint64_t b_desc);
VL_WGMMA_RS(32, 16, "}, {%16, %17, %18, %19}, %20")
VL_WGMMA_RS(64, 32, "}, {%32, %33, %34, %35}, %36")
VL_WGMMA_RS(96, 48, "}, {%48, %49, %50, %51}, %52")
VL_WGMMA_RS(128, 64, "}, {%64, %65, %66, %67}, %68")
VL_WGMMA_RS(256, 128, "}, {%128, %129, %130, %131}, %132")
#undef VL_WGMMA_RS
#undef VL_WGMMA_R16
#undef VL_WGMMA_R32
#undef VL_WGMMA_R48
#undef VL_WGMMA_R64
#undef VL_WGMMA_R128
#undef VL_WGMMA_A16
#undef VL_WGMMA_A32
#undef VL_WGMMA_A48
#undef VL_WGMMA_A64
#undef VL_WGMMA_A128
#undef VL_SM90A_ASM
}  // namespace simt
}  // namespace vl

#else  // the SIMT runner

#define VL_GLOBAL inline
#define VL_DEVICE inline
// One block runs at a time in the runner, so a function-local static is the block's shared memory.
#define VL_SHARED static
#define VL_SHARED_ALIGNED(n) alignas(n) static
#define VL_RESTRICT
#define VL_GRID_CONSTANT const
#define VL_UNROLL

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
#define VL_LAUNCH_BOUNDS_1(threads)

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

// ---- Hopper: warpgroup MMA ----
// In the runner wgmma is deferred like cp.async: issuing it (a warpgroup
// collective that checks the descriptors agree and that the B bytes were
// fenced into the async proxy) records the A fragments; B is read from
// shared memory and acc updated at the wgmma_wait that retires the group.
uint32_t smem_address(const void* p);
void wgmma_fence();
void wgmma_commit();
void wgmma_wait_groups(int n);
template <int N>
inline void wgmma_wait() {
  wgmma_wait_groups(N);
}
void fence_proxy_async();
inline void wgmma_fence_operand(float&) {}
void wgmma_m64nNk16(float* acc, const uint32_t a[4], uint64_t b_desc, bool f16, int n);
template <int N>
inline void wgmma_bf16(float* acc, const uint32_t a[4], uint64_t b_desc) {
  wgmma_m64nNk16(acc, a, b_desc, false, N);
}
template <int N>
inline void wgmma_f16(float* acc, const uint32_t a[4], uint64_t b_desc) {
  wgmma_m64nNk16(acc, a, b_desc, true, N);
}

// ---- Hopper: mbarriers and TMA ----
// Emulated as the PTX ISA defines them. A TMA copy is deferred further than
// cp.async: it lands only when no thread of the block can go on without it
// (oldest first), so a read that does not wait on its barrier sees the NaNs
// shared memory starts with. Waiting on a phase that never completes is
// reported as a deadlock.
struct TensorMap {
  const void* base;
  int elem_bytes, rank;
  uint64_t dims[3], strides[2];
  uint32_t box[3];
};
void mbarrier_init(uint64_t* bar, int count);
inline void fence_mbarrier_init() {}
void mbarrier_arrive(uint64_t* bar);
void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes);
bool mbarrier_try_wait(uint64_t* bar, uint32_t parity);
void tma_load_3d(void* dst, const TensorMap* map, int c0, int c1, int c2, uint64_t* bar);
void bulk_load(void* dst, const void* src, uint32_t bytes, uint64_t* bar);
void named_barrier(int id, int threads, bool wait);
template <int kThreads>
inline void named_barrier_sync(int id) {
  named_barrier(id, kThreads, true);
}
template <int kThreads>
inline void named_barrier_arrive(int id) {
  named_barrier(id, kThreads, false);
}
// A warpgroup collective in the runner (every thread of the group must reach it).
void setmaxnreg_group(int n);
template <int N>
inline void setmaxnreg_dec() {
  setmaxnreg_group(N);
}
template <int N>
inline void setmaxnreg_inc() {
  setmaxnreg_group(N);
}

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
  template <int N>
  VL_DEVICE static void wgmma(float* acc, const uint32_t a[4], uint64_t b_desc) {
    wgmma_bf16<N>(acc, a, b_desc);
  }
};
// A no-swizzle K-major wgmma descriptor (see wgmma_bf16) for
// the core matrices at `start`, with strides lbo (along k) and sbo (along n).
VL_DEVICE uint64_t wgmma_desc(const void* start, uint32_t lbo, uint32_t sbo) {
  const auto enc = [](uint32_t x) { return static_cast<uint64_t>((x & 0x3ffffu) >> 4); };
  return enc(smem_address(start)) | enc(lbo) << 16 | enc(sbo) << 32;
}

// A TMA descriptor's contents: a tensor of up to 3 dimensions (innermost
// first; dims in elements, strides of dimensions 1.. in bytes, multiples of
// 16; base 16-byte aligned), copied in boxes of `box` elements whose inner
// dimension is 128 bytes, 128B-swizzled: the 16-byte chunk c of box row r
// lands at chunk c ^ (r % 8), as the wgmma_desc_sw128 layout reads it.
struct TensorMapSpec {
  const void* base = nullptr;
  int elem_bytes = 0;  // 2 (16-bit bits) or 4 (f32)
  int rank = 0;
  uint64_t dims[3] = {1, 1, 1}, strides[2] = {0, 0};
  uint32_t box[3] = {1, 1, 1};
};
// Fills `out` (host code), or says why the spec cannot be one ("" on success).
std::string encode_tensor_map(TensorMap* out, const TensorMapSpec& spec);

// Waits for the phase of parity `parity` of an mbarrier.
VL_DEVICE void mbarrier_wait(uint64_t* bar, uint32_t parity) {
  while (!mbarrier_try_wait(bar, parity)) {
  }
}

// A K-major wgmma descriptor for 128B-swizzled B (what TMA writes with a
// 128-byte box row): rows of 64 16-bit k at 128 bytes, 8-row groups 1024
// bytes apart (sbo), the k16 slice chosen by starting 32 bytes further per
// slice; the tile must start 1024-byte aligned. lbo is unused (1 by convention).
VL_DEVICE uint64_t wgmma_desc_sw128(const void* start) {
  return static_cast<uint64_t>((smem_address(start) & 0x3ffffu) >> 4) | uint64_t{1} << 16 | uint64_t{1024 >> 4} << 32 |
         uint64_t{1} << 62;
}

// fp16: 3 more mantissa bits than bf16, but beyond 65504 an operand is +-Inf.
struct F16Ops {
  VL_DEVICE static uint32_t pack(float lo, float hi) { return pack_f16x2(lo, hi); }
  VL_DEVICE static void mma(float acc[4], const uint32_t a[4], const uint32_t b[2]) { mma_f16_m16n8k16(acc, a, b); }
  template <int N>
  VL_DEVICE static void wgmma(float* acc, const uint32_t a[4], uint64_t b_desc) {
    wgmma_f16<N>(acc, a, b_desc);
  }
};

}  // namespace simt
}  // namespace vl
