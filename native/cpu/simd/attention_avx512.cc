// AVX-512 attention tiles: 64 queries (4 vectors) per tile. Compiled with
// -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma; called only when the CPU has them.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu/simd/attention_isa.h"
#include "cpu/simd/attention_prefetch.h"

namespace vl {
namespace {

#include "cpu/simd/attention_avx512_vec.h"

constexpr int kQV = 4;
constexpr int kBc = 64;

#include "cpu/simd/attention_tile.inc"
#include "cpu/simd/attention_backward_tile.inc"

}  // namespace

const AttentionIsa kAvx512Attention = {"avx512", kBr, scratch_floats, tile, pack_rows,
                                         bwd_scratch_floats, bwd_tile, rotate_rows};

}  // namespace vl
