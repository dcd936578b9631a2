// Fused AS2DRoPE attention, forward (see ops/attention.h for the contract).
// Inputs: q [B,N,h,D], k, v [B,M,h,D] (any strides, last dim contiguous),
// then x, y position vectors for the queries and/or keys given explicitly.
// Outputs: out [B,N,h·D], optionally lse [B,h,N].
//
// The RoPE cos/sin tables are built once per call and the keys rotated once
// per (batch, head); the work is then split into (batch, head, query tile)
// tasks that each produce their output rows alone, so the result does not
// depend on the thread count. Tables, packed keys/values and per-chunk
// scratch come from the device allocator, so memory counters see them.
#include <algorithm>
#include <cmath>

#include "core/backend.h"
#include "core/dispatch.h"
#include "core/thread_pool.h"
#include "cpu/attention_rope.h"
#include "cpu/simd/attention_isa.h"

namespace vl {
namespace cpu {
namespace {

// Up to this many query tiles per (batch, head), one task packs and runs them all.
constexpr int64_t kPrivatePackTiles = 8;
// ... and from this many (batch, head) pairs on, when a pair's keys and values fit in L2.
constexpr int64_t kPrivatePackPairs = 16;
constexpr int64_t kPrivatePackBytes = int64_t{512} << 10;
// Bound on the keys and values packed at once for longer sequences, and rows per packing job.
constexpr int64_t kPackBytes = int64_t{16} << 20;
constexpr int64_t kPackGrainFloats = 16384;

// Runs the query tiles of every (batch, head) pair against its packed keys
// and values. pack(p, m0, rows, which, dst) packs rows [m0, m0 + rows) of
// pair p's keys (which 0) or values (1) into its block dst of pair_floats;
// run(scratch, p, kv, t0, t1) runs its tiles [t0, t1). A few tiles per pair,
// or enough pairs to share out whose block fits in L2: one task packs a
// pair into its own scratch, where it stays hot for the pair's tiles. Many
// tiles per pair: pairs go in groups packed first (in parallel, pack_rows
// per job), then the group's tiles run as separate tasks; groups bound the
// packed copy's size.
template <typename Pack, typename Run>
void run_pairs(const KernelCall& c, int64_t pairs, int64_t ntiles, int64_t tile_rows, int64_t M, int64_t D,
               int64_t pair_floats, size_t scratch_floats, int64_t pack_rows, Pack&& pack, Run&& run) {
  Backend& backend = backend_for(c.device);
  // Chunks of at least ~2 MFLOP (tiny LSA windows), yet several per thread.
  const double pair_flops = 4.0 * static_cast<double>(ntiles * tile_rows * M * D);
  const int64_t pair_grain = std::max<int64_t>(
      1, std::min(static_cast<int64_t>(std::ceil(2e6 / pair_flops)), pairs / 16));
  if (ntiles <= kPrivatePackTiles ||
      (pairs >= kPrivatePackPairs && pair_floats * int64_t{sizeof(float)} <= kPrivatePackBytes)) {
    parallel_for(pairs, pair_grain, [&](int64_t begin, int64_t end) {
      StoragePtr scratch = backend.allocate(c.device, (scratch_floats + pair_floats) * sizeof(float));
      float* kv = static_cast<float*>(scratch->data()) + scratch_floats;
      for (int64_t p = begin; p < end; ++p) {
        pack(p, 0, M, 0, kv);
        pack(p, 0, M, 1, kv);
        run(static_cast<float*>(scratch->data()), p, kv, 0, ntiles);
      }
    });
    return;
  }
  const int64_t group = std::max<int64_t>(1, std::min(pairs, kPackBytes / (pair_floats * int64_t{sizeof(float)})));
  StoragePtr packed = backend.allocate(c.device, static_cast<size_t>(group * pair_floats) * sizeof(float));
  float* pk = static_cast<float*>(packed->data());
  const int64_t pack_chunks = (M + pack_rows - 1) / pack_rows;
  const int64_t tile_grain = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(2e6 / (pair_flops / ntiles))));
  for (int64_t g0 = 0; g0 < pairs; g0 += group) {
    const int64_t gn = std::min(group, pairs - g0);
    parallel_for(gn * pack_chunks * 2, 1, [&](int64_t begin, int64_t end) {
      for (int64_t job = begin; job < end; ++job) {
        const int64_t chunk = job % pack_chunks, which = job / pack_chunks % 2, p = job / pack_chunks / 2;
        const int64_t m0 = chunk * pack_rows;
        pack(g0 + p, m0, std::min(pack_rows, M - m0), static_cast<int>(which), pk + p * pair_floats);
      }
    });
    const int64_t tasks = gn * ntiles;
    parallel_for(tasks, std::max<int64_t>(1, std::min(tile_grain, tasks / 16)), [&](int64_t begin, int64_t end) {
      StoragePtr scratch = backend.allocate(c.device, scratch_floats * sizeof(float));
      for (int64_t task = begin; task < end; ++task) {
        const int64_t tile = task % ntiles, p = task / ntiles;
        run(static_cast<float*>(scratch->data()), g0 + p, pk + p * pair_floats, tile, tile + 1);
      }
    });
  }
}

void attention(const KernelCall& c) {
  const TensorArg &q = c.in[0], &k = c.in[1], &v = c.in[2];
  const int64_t B = q.shape[0], N = q.shape[1], H = q.shape[2], D = q.shape[3], M = k.shape[1];
  const bool rope = c.attrs.integer("rope") != 0;
  Backend& backend = backend_for(c.device);

  // Tables: queries, then keys unless they share the queries' positions.
  RopeTables tables;
  if (rope) tables = rope_tables(c, 3, N, M, D, false);
  const float *qc = tables.q_cos, *qs = tables.q_sin, *kc = tables.k_cos, *ks = tables.k_sin;

  const AttentionIsa& isa = attention_isa();
  // bf16 precision for inference (no lse: the backward recomputes P in f32,
  // so a recorded forward stays f32 too) where the CPU has AVX512_BF16.
  const AttentionBf16Isa* bf = c.attrs.integer("wtype") == 1 && c.out.size() == 1 && D % 2 == 0 ? attention_bf16_isa() : nullptr;
  if (bf && D > bf->max_d) bf = nullptr;
  const int64_t tr = bf ? bf->tile_rows : isa.tile_rows, ntiles = (N + tr - 1) / tr, pairs = B * H;
  const float scale = static_cast<float>(c.attrs.num("scale"));
  const float* qd = static_cast<const float*>(q.data);
  const float* kd = static_cast<const float*>(k.data);
  const float* vd = static_cast<const float*>(v.data);
  float* od = static_cast<float*>(c.out[0].data);
  float* ld = c.out.size() > 1 ? static_cast<float*>(c.out[1].data) : nullptr;
  // A pair's packed block, in floats (4-byte words): f32 keys then values
  // [M][D] each; or (bf16) keys as bf16 rows, then values as words of row
  // pairs [ceil(M/2)][D].
  const int64_t v_offset = bf ? M * D / 2 : M * D;
  const int64_t pair_floats = v_offset + (bf ? (M + 1) / 2 * D : M * D);
  const size_t scratch_floats = static_cast<size_t>(bf ? bf->scratch_floats(D) : isa.scratch_floats(D));
  void (*const tile_fn)(const AttnTile*) = bf ? bf->tile : isa.tile;

  // Rows [m0, m0 + rows) of (batch, head) pair p's keys (which 0: rotated)
  // or values (1) into its packed block at dst (m0 even for bf16 values).
  auto pack_pair = [&](int64_t p, int64_t m0, int64_t rows, int which, float* dst) {
    const int64_t b = p / H, h = p % H;
    const TensorArg& src = which == 0 ? k : v;
    const float* base = (which == 0 ? kd : vd) + b * src.strides[0] + m0 * src.strides[1] + h * src.strides[2];
    const bool rotate = which == 0 && kc != nullptr;
    const float* cos = rotate ? kc + m0 * D : nullptr;
    const float* sin = rotate ? ks + m0 * D : nullptr;
    if (!bf)
      isa.pack_rows(base, src.strides[1], cos, sin, dst + which * v_offset + m0 * D, rows, D);
    else if (which == 0)
      bf->pack_keys(base, src.strides[1], cos, sin, reinterpret_cast<uint16_t*>(dst) + m0 * D, rows, D);
    else
      bf->pack_values(base, src.strides[1], reinterpret_cast<uint32_t*>(dst + v_offset) + m0 / 2 * D, rows, D);
  };
  // Query tiles [t0, t1) of pair p; kv: its packed keys and values, or null to read them in place.
  auto run_tiles = [&](float* scratch, int64_t p, const float* kv, int64_t t0, int64_t t1) {
    const int64_t b = p / H, h = p % H;
    AttnTile t{};
    t.q_stride = q.strides[1];
    t.out_stride = H * D;
    t.M = M, t.D = D, t.scale = scale;
    t.scratch = scratch;
    t.k = kv ? kv : kd + b * k.strides[0] + h * k.strides[2];
    t.v = kv ? kv + v_offset : vd + b * v.strides[0] + h * v.strides[2];
    t.k_stride = kv ? D : k.strides[1], t.v_stride = kv ? D : v.strides[1];
    t.k_cos = kv ? nullptr : kc, t.k_sin = kv ? nullptr : ks;
    for (int64_t tile = t0; tile < t1; ++tile) {
      const int64_t n0 = tile * tr;
      t.rows = std::min(tr, N - n0);
      t.q = qd + b * q.strides[0] + n0 * q.strides[1] + h * q.strides[2];
      t.q_cos = qc ? qc + n0 * D : nullptr, t.q_sin = qs ? qs + n0 * D : nullptr;
      t.out = od + (b * N + n0) * H * D + h * D;
      t.lse = ld ? ld + (b * H + h) * N + n0 : nullptr;
      tile_fn(&t);
    }
  };
  if (ntiles == 1 && !bf) {
    // One query tile per pair (LSA windows): keys are rotated block by block
    // inside the tile, keys and values read in place.
    const int64_t grain = std::max<int64_t>(1, std::min(static_cast<int64_t>(std::ceil(2e6 / (4.0 * tr * M * D))), pairs / 16));
    parallel_for(pairs, grain, [&](int64_t begin, int64_t end) {
      StoragePtr scratch = backend.allocate(c.device, scratch_floats * sizeof(float));
      for (int64_t p = begin; p < end; ++p) run_tiles(static_cast<float*>(scratch->data()), p, nullptr, 0, 1);
    });
    return;
  }
  // bf16 values go in row pairs: packing jobs start at even rows.
  run_pairs(c, pairs, ntiles, tr, M, D, pair_floats, scratch_floats, std::max<int64_t>(2, kPackGrainFloats / D / 2 * 2),
            pack_pair, run_tiles);
}

}  // namespace

VL_REGISTER_KERNEL(attention, CPU, attention);

}  // namespace cpu
}  // namespace vl
