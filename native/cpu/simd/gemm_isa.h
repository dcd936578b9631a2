// GEMM micro-kernels, compiled once per instruction set. Plain C data only
// crosses this boundary (see isa.h for why).
//
// Packed layouts (k runs along the panel, the micro-tile's rows/columns are
// innermost so one k step is one contiguous load):
//   f32 A panel:  [kc][mr]      floats          (rows broadcast)
//   f32 B panel:  [kc][nr]      floats          (columns loaded as vectors)
//   bf16 A panel: [kc/2][mr][2] bf16, k pairs   (one 32-bit broadcast per pair)
//   bf16 B panel: [kc/2][nr][2] bf16, k pairs   (what vdpbf16ps multiplies)
// Without AVX512_BF16 the bf16 variants take an f32 A panel laid out as
// [kc/2][mr][2] and widen B in the kernel.
#pragma once
#include <cstdint>

namespace vl {

// Epilogue kinds.
enum : int {
  kGemmActNone = 0,
  // SwiGLU: accumulator columns [0, nr/2) are the gate (x.W1), [nr/2, nr) the
  // up projection (x.W2) of the same output columns; stores silu(gate) * up.
  kGemmActSwiglu = 1,
};

// One micro-kernel call: C[m, n] = A-panel . B-panel (+ acc) (+ epilogue).
struct GemmTile {
  int64_t kc;          // k steps (f32) or k pairs (bf16 variants)
  const void* a;       // packed A micro-panel
  const void* b;       // packed B micro-panel
  const float* acc;    // partial sums to add, row stride ldacc (nullptr: start from 0)
  int64_t ldacc;
  float* c;            // destination, row stride ldc
  int64_t ldc;
  int m;               // rows to store (<= mr)
  int n;               // accumulator columns to load/store raw (<= nr)
  int nout;            // output columns of a final store
  int final_store;     // 1: apply the epilogue and store nout columns; 0: store raw sums
  const float* bias;   // final: added per output column (nullptr: none)
  const float* res;    // final: residual rows added last, row stride ldres (nullptr: none)
  int64_t ldres;
  int act;             // final: kGemmAct*
  const float* next;   // the next call's destination rows (stride ldnext), prefetched early; may be nullptr
  int64_t ldnext;
};

struct GemmVariant {
  int mr, nr;
  int kgroup;          // k values per packed step: 1 (f32) or 2 (bf16 pairs)
  int a_elem;          // bytes per packed A element
  int b_elem;          // bytes per packed B element
  void (*kernel)(const GemmTile* t);
  // Packs one A micro-panel for k in [k0, k0 + kc): rows[i] points at row i's
  // element k = 0 (nullptr: a zero row), k stride ks, or a k offset table koff
  // (element k at rows[i][koff[k]]) when koff != nullptr. kc is a multiple
  // of kgroup; k >= klimit reads as zero (padding to a whole pair).
  void (*pack_a)(const float* const* rows, int64_t ks, const int64_t* koff, int64_t k0, int64_t kc, int64_t klimit,
                 void* dst);
  // The same panel when its rows are adjacent in memory (a transposed A such
  // as dY^T in a weight gradient): element (i, k) at a[i + k * ks] for
  // i < rows (rows past it are zero). Each k step is one short contiguous run.
  void (*pack_a_cols)(const float* a, int rows, int64_t ks, int64_t k0, int64_t kc, int64_t klimit, void* dst);
  // The panel from bf16 rows (unit k stride; nullptr: a zero row), where the
  // panel holds bf16 pairs and so needs no conversion. nullptr: the driver
  // widens such rows to f32 for pack_a.
  void (*pack_a_b16)(const uint16_t* const* rows, int64_t k0, int64_t kc, int64_t klimit, void* dst);
};

struct GemmKernels {
  const char* name;
  int layout;          // id of the packed weight layouts (an ISA may not use another's)
  GemmVariant f32;
  GemmVariant bf16;    // bf16 weights, f32 accumulation
  // Packs one B micro-panel (nr columns) for k in [0, kpad): cols[j] points at
  // column j's element k = 0 (nullptr: zero), k stride ks. f32 or bf16 pairs.
  void (*pack_b_f32)(const float* const* cols, int64_t ks, int64_t k, int64_t kpad, void* dst);
  void (*pack_b_bf16)(const float* const* cols, int64_t ks, int64_t k, int64_t kpad, void* dst);
};

extern const GemmKernels kGemmScalar;
extern const GemmKernels kGemmAvx2;
extern const GemmKernels kGemmAvx512;
// Only the bf16 variant: vdpbf16ps (needs AVX512_BF16 at run time); it uses
// kGemmAvx512's B packing (same panels).
extern const GemmVariant kGemmAvx512Bf16Variant;

// Where the k offsets [k, k + n) of a gathered A (a conv's patches) form one
// contiguous run: the run's start, else -1. Such chunks pack as vector loads.
inline int64_t contiguous_run(const int64_t* koff, int64_t k, int n) {
  const int64_t base = koff[k];
  for (int j = 1; j < n; ++j)
    if (koff[k + j] != base + j) return -1;
  return base;
}

// The kernels for the active ISA (VLLAMA_CPU_ISA) and, on AVX-512, whether
// the CPU has AVX512_BF16.
const GemmKernels& gemm_kernels();

}  // namespace vl
