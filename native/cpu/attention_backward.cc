// Fused AS2DRoPE attention, backward (see ops/attention.h for the contract).
// Inputs: dOut [B,N,h·D], q [B,N,h,D], k, v [B,M,h,D], out [B,N,h·D] (last
// dims contiguous, any other strides), lse [B,h,N] contiguous, then the
// explicit position vectors as for the forward.
// Outputs: dq [B,N,h,D], dk, dv [B,M,h,D], written through their strides
// (last dim contiguous), so they may be views into one packed tensor.
//
// A task owns a (batch, head) pair, or a fixed range of its query tiles when
// there are too few pairs to share out: it packs the rotated keys and the
// values, runs its query tiles (each writes its dq rows alone) and sums dk,
// dv over them in its own accumulators. Split pairs add their ranges'
// partial sums afterwards in range order. Chunking depends on the shapes
// only, so the result does not depend on the thread count; the N×M scores
// exist only tile by tile in per-thread scratch.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/backend.h"
#include "core/dispatch.h"
#include "core/thread_pool.h"
#include "cpu/attention_rope.h"
#include "cpu/simd/attention_isa.h"

namespace vl {
namespace cpu {
namespace {

// Pairs are split into ranges of query tiles while there are fewer than this many tasks...
constexpr int64_t kMinTasks = 8;
// ... as long as a range still does this much work (multiply-adds).
constexpr double kMinRangeMacs = 1e6;
// ... and their partial sums of dk, dv take at most this much memory in all.
constexpr double kMaxPartialBytes = 4 << 20;
// Key rows per job when split pairs' partial sums are added up.
constexpr int64_t kReduceRows = 64;

void attention_backward(const KernelCall& c) {
  const TensorArg &dout = c.in[0], &q = c.in[1], &k = c.in[2], &v = c.in[3], &o = c.in[4];
  const TensorArg &dq = c.out[0], &dk = c.out[1], &dv = c.out[2];
  const int64_t B = q.shape[0], N = q.shape[1], H = q.shape[2], D = q.shape[3], M = k.shape[1];
  Backend& backend = backend_for(c.device);

  RopeTables tables;
  if (c.attrs.integer("rope") != 0) tables = rope_tables(c, 6, N, M, D, true);

  const AttentionIsa& isa = attention_isa();
  const int64_t tr = isa.tile_rows, ntiles = (N + tr - 1) / tr, pairs = B * H;
  const float scale = static_cast<float>(c.attrs.num("scale"));
  const float* dod = static_cast<const float*>(dout.data);
  const float* qd = static_cast<const float*>(q.data);
  const float* kd = static_cast<const float*>(k.data);
  const float* vd = static_cast<const float*>(v.data);
  const float* od = static_cast<const float*>(o.data);
  const float* ld = static_cast<const float*>(c.in[5].data);
  float* dqd = static_cast<float*>(dq.data);
  float* dkd = static_cast<float*>(dk.data);
  float* dvd = static_cast<float*>(dv.data);
  const int64_t Dp = (D + 15) / 16 * 16;  // accumulator row stride
  const int64_t kv_floats = 2 * M * D, acc_floats = 2 * M * Dp;
  const int64_t scratch_floats = (isa.bwd_scratch_floats(D) + 15) / 16 * 16;

  // Query tile ranges per pair: fixed by the shapes.
  const double tile_macs = 5.0 * static_cast<double>(tr * M * D);
  int64_t ranges = 1;
  if (pairs < kMinTasks && ntiles > 1) {
    ranges = std::min(ntiles, (kMinTasks + pairs - 1) / pairs);
    ranges = std::min(ranges, static_cast<int64_t>(ntiles * tile_macs / kMinRangeMacs));
    ranges = std::min(ranges, static_cast<int64_t>(kMaxPartialBytes / (4.0 * static_cast<double>(pairs * acc_floats))));
    ranges = std::max<int64_t>(1, ranges);
  }
  const int64_t range_tiles = (ntiles + ranges - 1) / ranges;
  ranges = ntiles == 0 ? 1 : (ntiles + range_tiles - 1) / range_tiles;

  // Pair p's keys, rotated, then its values, as contiguous rows at kv.
  auto pack = [&](int64_t p, float* kv) {
    const int64_t b = p / H, h = p % H;
    isa.pack_rows(kd + b * k.strides[0] + h * k.strides[2], k.strides[1], tables.k_cos, tables.k_sin, kv, M, D);
    isa.pack_rows(vd + b * v.strides[0] + h * v.strides[2], v.strides[1], nullptr, nullptr, kv + M * D, M, D);
  };
  // Query tiles [t0, t1) of pair p against its packed keys and values; dk, dv summed into acc.
  auto run = [&](float* scratch, int64_t p, const float* kv, float* acc, int64_t t0, int64_t t1) {
    const int64_t b = p / H, h = p % H;
    AttnBwdTile t{};
    t.q_stride = q.strides[1], t.dout_stride = dout.strides[1], t.out_stride = o.strides[1];
    t.k = kv, t.v = kv + M * D, t.kv_stride = D;
    t.dq_stride = dq.strides[1];
    t.dk = acc, t.dv = acc + M * Dp, t.acc_stride = Dp;
    t.M = M, t.D = D, t.scale = scale;
    t.scratch = scratch;
    for (int64_t tile = t0; tile < t1; ++tile) {
      const int64_t n0 = tile * tr;
      t.rows = std::min(tr, N - n0);
      t.q = qd + b * q.strides[0] + n0 * q.strides[1] + h * q.strides[2];
      t.dout = dod + b * dout.strides[0] + n0 * dout.strides[1] + h * D;
      t.out = od + b * o.strides[0] + n0 * o.strides[1] + h * D;
      t.lse = ld + (b * H + h) * N + n0;
      t.q_cos = tables.q_cos ? tables.q_cos + n0 * D : nullptr;
      t.q_sin = tables.q_sin ? tables.q_sin + n0 * D : nullptr;
      t.q_sin_t = tables.q_sin_t ? tables.q_sin_t + n0 * D : nullptr;
      t.dq = dqd + b * dq.strides[0] + n0 * dq.strides[1] + h * dq.strides[2];
      isa.bwd_tile(&t);
    }
  };
  // Key rows [m0, m0 + rows) of pair p from its accumulators: dk un-rotated, dv copied.
  auto finish = [&](int64_t p, const float* acc, int64_t m0, int64_t rows) {
    const int64_t b = p / H, h = p % H;
    isa.rotate_rows(acc + m0 * Dp, Dp, tables.k_cos ? tables.k_cos + m0 * D : nullptr,
                    tables.k_sin_t ? tables.k_sin_t + m0 * D : nullptr, 1.0f,
                    dkd + b * dk.strides[0] + m0 * dk.strides[1] + h * dk.strides[2], dk.strides[1], rows, D);
    isa.rotate_rows(acc + M * Dp + m0 * Dp, Dp, nullptr, nullptr, 1.0f,
                    dvd + b * dv.strides[0] + m0 * dv.strides[1] + h * dv.strides[2], dv.strides[1], rows, D);
  };
  auto zero = [](float* p, int64_t n) { std::memset(p, 0, static_cast<size_t>(n) * sizeof(float)); };

  if (ranges == 1) {
    // Chunks of at least ~2 M multiply-adds (tiny LSA windows), yet several per thread.
    const double pair_macs = std::max(1.0, ntiles * tile_macs);
    const int64_t grain =
        std::max<int64_t>(1, std::min(static_cast<int64_t>(std::ceil(2e6 / pair_macs)), pairs / 16));
    parallel_for(pairs, grain, [&](int64_t begin, int64_t end) {
      StoragePtr s = backend.allocate(c.device, static_cast<size_t>(scratch_floats + kv_floats + acc_floats) * 4);
      float* scratch = static_cast<float*>(s->data());
      float* kv = scratch + scratch_floats;
      float* acc = kv + kv_floats;
      for (int64_t p = begin; p < end; ++p) {
        pack(p, kv);
        zero(acc, acc_floats);
        run(scratch, p, kv, acc, 0, ntiles);
        finish(p, acc, 0, M);
      }
    });
    return;
  }

  // Few pairs: each range sums into its own slot, then slots are added in order.
  StoragePtr partial = backend.allocate(c.device, static_cast<size_t>(pairs * ranges * acc_floats) * 4);
  float* slots = static_cast<float*>(partial->data());
  parallel_for(pairs * ranges, 1, [&](int64_t begin, int64_t end) {
    StoragePtr s = backend.allocate(c.device, static_cast<size_t>(scratch_floats + kv_floats) * 4);
    float* scratch = static_cast<float*>(s->data());
    float* kv = scratch + scratch_floats;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t p = task / ranges, r = task % ranges;
      float* acc = slots + task * acc_floats;
      pack(p, kv);
      zero(acc, acc_floats);
      run(scratch, p, kv, acc, r * range_tiles, std::min(ntiles, (r + 1) * range_tiles));
    }
  });
  const int64_t row_jobs = (M + kReduceRows - 1) / kReduceRows;
  parallel_for(pairs * row_jobs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t job = begin; job < end; ++job) {
      const int64_t p = job / row_jobs, m0 = job % row_jobs * kReduceRows, rows = std::min(kReduceRows, M - m0);
      float* sum = slots + p * ranges * acc_floats;
      for (int64_t r = 1; r < ranges; ++r) {
        const float* add = sum + r * acc_floats;
        for (int64_t part = 0; part < 2; ++part) {
          float* dst = sum + part * M * Dp + m0 * Dp;
          const float* src = add + part * M * Dp + m0 * Dp;
          for (int64_t i = 0; i < rows * Dp; ++i) dst[i] += src[i];
        }
      }
      finish(p, sum, m0, rows);
    }
  });
}

}  // namespace

VL_REGISTER_KERNEL(attention_backward, CPU, attention_backward);

}  // namespace cpu
}  // namespace vl
