// RoPE tables of the fused attention kernels (forward and backward): token
// positions from the call's attributes and inputs, fp32 angles, cos/sin per
// channel in the layout the tiles read (see AttnTile in simd/attention_isa.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dispatch.h"
#include "core/storage.h"

namespace vl {
namespace cpu {

// Tables [rows][D]: cos of each pair's angle twice, and (−sin, +sin).
// sin_t: the sines of the transposed rotation, (+sin, −sin), when asked for
// (rotating by cos and sin_t undoes a rotation by cos and sin).
struct RopeTables {
  StoragePtr storage;
  const float *q_cos = nullptr, *q_sin = nullptr, *q_sin_t = nullptr;
  const float *k_cos = nullptr, *k_sin = nullptr, *k_sin_t = nullptr;
};

// The tables of N queries and M keys from the attributes "q_*", "k_*" and
// "k_same" that ops/attention.cc sets, explicit positions being inputs from
// c.in[first_position] on (query x, y, then key x, y). Keys that share the
// queries' positions share their tables. Call only when "rope" is set.
RopeTables rope_tables(const KernelCall& c, size_t first_position, int64_t N, int64_t M, int64_t D, bool transposed);

}  // namespace cpu
}  // namespace vl
