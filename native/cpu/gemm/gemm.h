// The GEMM driver: C = A . B^T (+ bias) (+ residual), with A [M,K] and B
// [N,K] (the Linear weight layout), both read through strides, so
// transposes, batches and the patch-conv gather need no copies.
//
// Blocking (BLIS style): A and B are packed into micro-panels (mr rows or nr
// columns, see cpu/simd/gemm_isa.h) and K is cut into blocks of about KC.
// The thread pool shares out row blocks of about MC rows (tasks); a task
// packs its rows of A, then for each NC-wide column block and each K block
// runs the register-blocked micro-kernel over its tiles (a task with one
// column block packs each K block of A just before using it). A whose rows
// are adjacent in memory (a transposed operand) is packed from contiguous
// runs. The K blocks depend
// only on K, and each C element is summed by exactly one micro-kernel call
// sequence, so results are the same for any thread count.
//
// No N-API or tensor types here: bench/native builds this with the
// per-ISA kernels, the thread pool and the CPU feature detection alone.
#pragma once
#include <cstddef>
#include <cstdint>

#include "cpu/simd/gemm_isa.h"

namespace vl {
namespace gemm {

// F16: the f32 kernels and layout, each A and B panel rounded to fp16
// values as it is packed (weights packed once keep them), so the result is
// the f32 GEMM of f16-rounded operands (what an f16 tensor-core pass computes).
enum class WType : int { F32 = 0, BF16 = 1, F16 = 2 };

// Maps a flat index to an element offset through nested dims (outermost
// first): index i = ((i0 * s1 + i1) * s2 + i2)... -> sum(i_d * stride_d).
struct DimMap {
  int nd = 0;
  int64_t size[8] = {};
  int64_t stride[8] = {};
  static DimMap linear(int64_t n, int64_t stride);
  void push(int64_t size, int64_t stride);  // appends an inner dim (size 1 dims are dropped)
  int64_t offset(int64_t i) const;
};

// Weights packed once. The bytes are the panels of gemm_kernels() (layout id
// kernels.layout); the caller keeps (n, k, wtype, layout, swiglu) beside them.
struct PackedInfo {
  int64_t n = 0;   // output columns (SwiGLU: the hidden size)
  int64_t k = 0;
  WType wtype = WType::F32;
  int layout = 0;
  int64_t kblock = 0;
  bool swiglu = false;
};
// The K block (k steps) of packed operands for depth k: a function of k and
// the blocking, never of the thread count. Packed weights record it.
int64_t k_block(int64_t k, WType wtype);
// Bytes of a packed weight for the active kernels (a multiple of 64).
size_t packed_bytes(const PackedInfo& info);
// Packs B (element (n, k) at b[n * ns + k * ks]) into dst (64-byte aligned).
// SwiGLU packs W1 and W2 ([hidden, K] each) into interleaved panels.
void pack_weight(const float* b, int64_t ns, int64_t ks, const PackedInfo& info, void* dst);
void pack_swiglu(const float* w1, int64_t ns1, int64_t ks1, const float* w2, int64_t ns2, int64_t ks2,
                 const PackedInfo& info, void* dst);

struct Problem {
  int64_t batch = 1;
  int64_t m = 0, n = 0, k = 0;
  WType wtype = WType::F32;
  bool swiglu = false;  // only with packed weights: n is the hidden size
  // A: element (b, i, kk) at a + a_boff[b] + a_rows.offset(i) + (a_koff ? a_koff[kk] : kk * a_ks)
  const float* a = nullptr;
  DimMap a_rows;
  int64_t a_ks = 1;
  const int64_t* a_koff = nullptr;
  const int64_t* a_boff = nullptr;
  // A as bf16 instead (BF16 only): a16 replaces a, k unit stride, no a_koff.
  const uint16_t* a16 = nullptr;
  // B: packed (same for every batch), or element (b, j, kk) at b + b_boff[b] + j * b_ns + kk * b_ks
  const void* b_packed = nullptr;
  const float* b = nullptr;
  int64_t b_ns = 0, b_ks = 1;
  const int64_t* b_boff = nullptr;  // nullptr: the same B for every batch
  // C (contiguous rows of n): c + c_boff[b] + i * ldc + j
  float* c = nullptr;
  int64_t ldc = 0;
  const int64_t* c_boff = nullptr;
  // C as bf16 instead (no residual): c16 replaces c, each value rounded once.
  uint16_t* c16 = nullptr;
  // Epilogue: bias[n] (not with swiglu), residual rows r + r_boff[b] + i * ldr + j
  const float* bias = nullptr;
  const float* r = nullptr;
  int64_t ldr = 0;
  const int64_t* r_boff = nullptr;
};

void run(const Problem& p);

// Blocking parameters (tuning and benchmarks). kc is in k steps.
struct Blocking {
  int64_t mc, nc, kc;
};
Blocking blocking();
void set_blocking(const Blocking& b);

}  // namespace gemm
}  // namespace vl
