// The Hopper (sm_90a) kernels of the fused AS2DRoPE flash attention, for
// every arithmetic of attention_fwd (AttnSplit: f32 as bf16 hi + lo and three
// products; AttnBf16, AttnF16: one): the contract and results (up to the
// order of f32 sums) of the forward and of the backward's dq and dk/dv
// (attention_bwd_dq_wgmma, attention_bwd_dkdv_wgmma, below), every product
// on wgmma. Kernel source shared by nvcc (compiled for sm_90a) and the SIMT
// runner.
//
// The forward, two kernels per call:
//   attention_pack_kv: once per call, the keys of every (batch, head) pair
//     rotated and rounded to 16 bits (hi, then lo for AttnSplit), and the
//     values rounded and transposed, into blocks of kBN keys laid out as
//     wgmma's no-swizzle K-major core
//     matrices (8 rows x 8 columns of 16 bytes): keys (key/8, d/8) at
//     ((key/8)·kDp/8 + d/8)·128, values (d/8, key/8) at ((d/8)·kBN/8 + key/8)·128.
//     Every query tile then reads ready operands instead of converting the
//     same keys again (the conversion, not the products, would bound it).
//   attention_fwd_wgmma: 128 query rows per block, warp-specialized: two
//     consumer warpgroups of 64 rows each, and a producer warpgroup that
//     hands its registers to them (setmaxnreg) and whose first thread
//     streams the packed blocks into a ring (3 stages, 2 where 3 do not fit)
//     with bulk copies (a packed block is one contiguous run of bytes),
//     each stage with a `full` mbarrier (expect_tx, completed by the copy)
//     and an `empty` one (every consumer thread arrives once its products on
//     the stage are done). No barrier spans the block in the key loop. The
//     rotated queries stay in registers as wgmma A fragments. Per key block:
//     S = Q·Kᵀ, one wgmma m64n{kBN}k16 per k16 slice of the head; the online
//     softmax on the accumulators (attn_online_softmax); O += P·V, one
//     wgmma m64n{kDp}k16 per k16 slice of the keys with P converted to A
//     fragments in registers (the accumulator of S is A's layout), issued
//     with the next block's S, the two warpgroups taking turns (FA3's
//     ping-pong: one's softmax overlaps the other's products). With the
//     hi/lo split each product is lo·hi + hi·lo + hi·hi, as attn_mma orders them.
#pragma once
#include <type_traits>

#include "cuda/kernels/attention_tiles.cuh"

namespace vl {
namespace cuda {
namespace kernels {

constexpr int kAttnWgConsumers = 256, kAttnWgRows = 128;
constexpr int kAttnWgThreads = kAttnWgConsumers + 128;  // and the producer warpgroup
// Registers after setmaxnreg, as the Hopper GEMM: 40 + 2 x 232 per lane of a sub-partition.
constexpr int kAttnWgProducerRegs = 40, kAttnWgConsumerRegs = 232;
// Keys per block: the S accumulator and P fragments of a thread take
// (2 + kParts)/4 kBN registers, O kDp/2 and the query fragments kParts·kDp/4.
template <int kDp, typename P>
constexpr int kAttnWgKeys = kDp <= 64 && P::kParts == 1 ? 128 : 64;
// The head widths with a wgmma kernel (n = kDp must be one of the products simt.cuh wraps).
template <int kDp>
constexpr bool kAttnWgmmaWidth = kDp == 32 || kDp == 64 || kDp == 96 || kDp == 128;

// What a packed block holds: kBN rows of two tensors X and Y (keys and
// values, or for the dk/dv kernel queries and dOut), as kTensors tensors of
// kParts parts (hi, lo) of kBN·kDp 16-bit values, X rotated by its table:
//   kAttnPackFwd:  X rows (row-major), Y transposed (channel-major);
//   kAttnPackDq:   X rows, Y rows, X transposed;
//   kAttnPackDkdv: X rows, Y rows, Y transposed, X transposed, then the
//                  rows' lse·log2e and delta (kBN floats each, attention_pack_stats).
constexpr int kAttnPackFwd = 0, kAttnPackDq = 1, kAttnPackDkdv = 2;
template <int kDp, typename P, int kKind = kAttnPackFwd>
struct AttnPack {
  static constexpr int kBN = kKind == kAttnPackFwd ? kAttnWgKeys<kDp, P> : kKind == kAttnPackDkdv && kDp > 64 ? 32 : 64;
  static constexpr int kTensors = kKind == kAttnPackFwd ? 2 : kKind == kAttnPackDq ? 3 : 4;
  static constexpr int kPartElems = kBN * kDp;
  static constexpr int kStatsBytes = kKind == kAttnPackDkdv ? 2 * kBN * 4 : 0;
  static constexpr int kBlockBytes = 2 * kTensors * P::kParts * kPartElems + kStatsBytes;
  VL_DEVICE static bool of_y(int t) { return t == 1 || (kKind == kAttnPackDkdv && t == 2); }
  VL_DEVICE static bool transposed(int t) { return kKind == kAttnPackFwd ? t == 1 : kKind == kAttnPackDq ? t == 2 : t >= 2; }
};
// Shared memory: the ring of packed blocks (the queries' f32 staging tile
// before it), the padded tiles of attn_fill, then the ring's full and empty
// mbarriers (room for 3 stages each).
template <int kDp, typename P>
constexpr int kAttnWgQBytes = (2 * AttnTile<kAttnWgRows, kDp, P>::kElems + 15) / 16 * 16;
constexpr int kAttnWgBarrierBytes = 2 * 3 * 8;
// Blocks in flight: 3, or 2 where 3 would not fit (the split at D 128).
// The padded tiles after the ring: the queries' (the forward), the queries'
// and dOut's (dq) or the keys' and values' (dk/dv).
template <int kDp, typename P, int kKind = kAttnPackFwd>
constexpr int kAttnWgTileBytes = (kKind == kAttnPackFwd ? 1 : 2) * kAttnWgQBytes<kDp, P> + kAttnWgBarrierBytes;
template <int kDp, typename P, int kKind = kAttnPackFwd>
constexpr int kAttnWgStages = 3 * AttnPack<kDp, P, kKind>::kBlockBytes + kAttnWgTileBytes<kDp, P, kKind> <= 227 * 1024 ? 3 : 2;
template <int kDp, typename P, int kKind = kAttnPackFwd>
constexpr int kAttnWgSmemBytes = kAttnWgStages<kDp, P, kKind> * AttnPack<kDp, P, kKind>::kBlockBytes + kAttnWgTileBytes<kDp, P, kKind>;

// The packed blocks of one call, in 16-bit values: pairs · ceil(rows / kBN) blocks.
template <int kDp, typename P, int kKind = kAttnPackFwd>
int64_t attn_wg_packed_elems(int64_t pairs, int M) {
  using L = AttnPack<kDp, P, kKind>;
  return pairs * ((M + L::kBN - 1) / L::kBN) * (L::kBlockBytes / 2);
}

// One thread per 16-byte chunk e < chunks of the hi parts (chunks =
// attn_wg_packed_elems / 8 / kParts; grid.x = ceil(chunks / 256), blockDim.x
// = 256), which also writes the chunk's lo (AttnSplit) into `out`: chunk c
// of tensor t of block j of pair p, e = ((p·blocks + j)·kTensors + t)·
// chunks_per_part + c. Laid out as wgmma's no-swizzle K-major core matrices
// (8 rows x 8 columns of 16 bytes): a row-major tensor's (row/8, d/8) at
// ((row/8)·kDp/8 + d/8)·128, a channel-major one's (d/8, row/8) at
// ((d/8)·kBN/8 + row/8)·128. Rows past M and channels past D are zero.
// a: X in k, Y in v (H, M rows, D, vec), X's RoPE table in k_rope.
template <int kDp, typename P, int kKind = kAttnPackFwd>
VL_GLOBAL void VL_LAUNCH_BOUNDS(256) attention_pack_kv(const AttnFwdArgs a, int64_t chunks, uint16_t* VL_RESTRICT out) {
  using L = AttnPack<kDp, P, kKind>;
  constexpr int kBN = L::kBN, kPart = L::kPartElems, kChunks = kPart / 8;
  const int64_t e = static_cast<int64_t>(simt::block_x()) * 256 + simt::thread_x();
  if (e >= chunks) return;
  const int c = static_cast<int>(e % kChunks), t = static_cast<int>(e / kChunks % L::kTensors);
  const int64_t pb = e / kChunks / L::kTensors;
  const int blocks = (a.M + kBN - 1) / kBN;
  const int j = static_cast<int>(pb % blocks), core = c / 8, row = c % 8;
  const AttnPairRows in = attn_pair_rows(a, static_cast<int>(pb / blocks));
  const bool x = !L::of_y(t);
  const float* src = x ? in.k : in.v;
  const int64_t stride = x ? a.k.st : a.v.st;
  const float* table = x ? a.k_rope : nullptr;
  float v[8];
  if (!L::transposed(t)) {
    // 8 channels of one key.
    const int key = j * kBN + 8 * (core / (kDp / 8)) + row, d0 = 8 * (core % (kDp / 8));
    attn_load_rotated4(src, stride, key, d0, a.M, a.D, table, a.vec, v);
    attn_load_rotated4(src, stride, key, d0 + 4, a.M, a.D, table, a.vec, v + 4);
  } else {
    // One channel of 8 keys (its rotation pairs it with its neighbours: a group of 4 each).
    const int d = 8 * (core / (kBN / 8)) + row, key0 = j * kBN + 8 * (core % (kBN / 8));
    for (int i = 0; i < 8; ++i) {
      float g[4];
      attn_load_rotated4(src, stride, key0 + i, d & ~3, a.M, a.D, table, a.vec, g);
      v[i] = g[d & 3];
    }
  }
  uint32_t hi[4], lo[4];
  for (int i = 0; i < 4; ++i) attn_split2<P>(v[2 * i], v[2 * i + 1], hi[i], lo[i]);
  // Block pb's tensors, then its stats (dk/dv).
  uint16_t* dst = out + pb * (L::kBlockBytes / 2) + t * P::kParts * kPart + 8 * c;
  attn_store4(dst, hi[0], hi[1]);
  attn_store4(dst + 4, hi[2], hi[3]);
  if constexpr (P::kParts == 2) {
    attn_store4(dst + kPart, lo[0], lo[1]);
    attn_store4(dst + kPart + 4, lo[2], lo[3]);
  }
}

// Issues acc (a warpgroup's 64 x N) += A·B over kSlices k16 slices (commit
// and wait are the caller's): A the fragments a[s] (hi, lo), B's parts (hi,
// lo) `part` bytes apart from base, the core matrices of slice s at + 256 s
// (two core matrices along k), rows of core matrices sbo bytes apart. The
// hi/lo split adds lo·hi and hi·lo before hi·hi, as attn_mma does.
template <typename P, int N, int kSlices>
VL_DEVICE void attn_wgmma(float* acc, const uint32_t (&a)[kSlices][P::kParts][4], const unsigned char* base, int part,
                          uint32_t sbo) {
  const auto product = [&](int la, int lb) {
    VL_UNROLL
    for (int s = 0; s < kSlices; ++s)
      P::Ops::template wgmma<N>(acc, a[s][la], simt::wgmma_desc(base + lb * part + 256 * s, 128, sbo));
  };
  simt::wgmma_fence();
  if constexpr (P::kParts == 2) {
    product(1, 0);
    product(0, 1);
  }
  product(0, 0);
}

// Waits for the products issued since the last wait, whose accumulators are
// acc[0..n) (kept from being read before it).
template <int kN>
VL_DEVICE void attn_wgmma_wait(float* acc) {
  simt::wgmma_commit();
  simt::wgmma_wait<0>();
  VL_UNROLL
  for (int i = 0; i < kN; ++i) simt::wgmma_fence_operand(acc[i]);
}

// The backward's two score-like products of a block, from zero: s = A1·B1ᵀ
// and dp = A2·B2ᵀ (B1 at base, B2 one tensor further: kTensor bytes), each
// over kDp (kDp/16 k16 slices), N wide; both waited for.
template <typename P, int kN, int kDp>
VL_DEVICE void attn_wgmma_scores(float (&s)[kN / 8][4], float (&dp)[kN / 8][4], const uint32_t (&a1)[kDp / 16][P::kParts][4],
                                 const uint32_t (&a2)[kDp / 16][P::kParts][4], const unsigned char* base, int part, int tensor) {
  VL_UNROLL
  for (int i = 0; i < kN / 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = dp[i][0] = dp[i][1] = dp[i][2] = dp[i][3] = 0.0f;
  // Each zero in its own register before the products: else the compiler
  // copies dp's zeros from an s accumulator the first product is writing,
  // and ptxas waits for it (C7517).
  VL_UNROLL
  for (int i = 0; i < kN / 2; ++i) {
    simt::wgmma_fence_operand((&s[0][0])[i]);
    simt::wgmma_fence_operand((&dp[0][0])[i]);
  }
  attn_wgmma<P, kN>(&s[0][0], a1, base, part, 128 * (kDp / 8));
  attn_wgmma<P, kN>(&dp[0][0], a2, base + tensor, part, 128 * (kDp / 8));
  attn_wgmma_wait<kN / 2>(&s[0][0]);
  VL_UNROLL
  for (int i = 0; i < kN / 2; ++i) simt::wgmma_fence_operand((&dp[0][0])[i]);
}

// The mbarriers of the ring of packed blocks (kStages stages): `full` (one
// arrival, the producer's expect_tx, and the block's bytes) and `empty`
// (every consumer thread) per stage. Thread 0 initializes them; a block
// barrier must follow before any use.
template <int kStages>
VL_DEVICE void attn_wg_ring_init(uint64_t* full, uint64_t* empty) {
  if (simt::thread_x() != 0) return;
  for (int s = 0; s < kStages; ++s) {
    simt::mbarrier_init(&full[s], 1);
    simt::mbarrier_init(&empty[s], kAttnWgConsumers);
  }
  simt::fence_mbarrier_init();
}

// The roles after the prologue. The producer warpgroup hands its registers
// to the consumers, and its first thread streams the pair's `blocks` packed
// blocks (kv + pair·blocks·kStage bytes on) into the ring, block j into
// stage j % kStages once the consumers have released the block before it
// there (round r - 1: phase parity (r-1) & 1); false for its threads. True
// for the consumers, who take the registers.
template <int kStages, int kStage>
VL_DEVICE bool attn_wg_consumer(unsigned char* smem, uint64_t* full, uint64_t* empty, const uint16_t* kv, int pair, int blocks) {
  if (simt::thread_x() < kAttnWgConsumers) {
    simt::setmaxnreg_inc<kAttnWgConsumerRegs>();
    return true;
  }
  simt::setmaxnreg_dec<kAttnWgProducerRegs>();
  if (simt::thread_x() != kAttnWgConsumers) return false;
  const unsigned char* src = reinterpret_cast<const unsigned char*>(kv) + static_cast<int64_t>(pair) * blocks * kStage;
  for (int j = 0; j < blocks; ++j) {
    const int s = j % kStages;
    if (j >= kStages) simt::mbarrier_wait(&empty[s], ((j / kStages) - 1) & 1);
    simt::mbarrier_arrive_expect_tx(&full[s], kStage);
    simt::bulk_load(smem + s * kStage, src + static_cast<int64_t>(j) * kStage, kStage, &full[s]);
  }
  return false;
}

// Block-wide: 128 rows (n0.. of a pair's `x` rows, `rows` of them valid) staged
// through cp.async in the ring's space (`stage`) by the consumers, then
// rotated by `table` (or not) and split into the padded tile. Ends with a
// block barrier: the staging space is free again.
template <int kDp, typename P>
VL_DEVICE void attn_wg_fill(const AttnTile<kAttnWgRows, kDp, P>& tile, float* stage, const float* x, int64_t stride, int rows,
                            int D, const float* table) {
  const bool consumer = simt::thread_x() < kAttnWgConsumers;
  if (consumer) attn_stage<kAttnWgRows, kDp, kAttnWgConsumers>(stage, x, stride, rows, D);
  simt::cp_async_commit();
  simt::cp_async_wait<0>();
  // The ring's bytes, written here by cp.async (the generic proxy), are next
  // written by the producer's bulk copies (the async proxy): each writer fences.
  simt::fence_proxy_async();
  simt::sync_threads();
  if (consumer) attn_fill<kAttnWgRows, kDp, P, kAttnWgConsumers>(tile, stage, kDp, rows, D, table, true);
  simt::sync_threads();
}

// grid.x = ceil(N / 128) · B · heads (a.q_tiles = ceil(N / 128)), blockDim.x
// = kAttnWgThreads, kAttnWgSmemBytes<kDp, P> of dynamic shared memory; q rows
// 16-byte aligned (a.vec); kv: attention_pack_kv<kDp, P>'s output for the
// same call (16-byte aligned). kDp: kAttnWgmmaWidth.
template <int kDp, typename P>
VL_GLOBAL void VL_LAUNCH_BOUNDS_1(kAttnWgThreads) attention_fwd_wgmma(const AttnFwdArgs a, const uint16_t* kv) {
  using L = AttnPack<kDp, P>;
  constexpr int kBN = L::kBN, kStage = L::kBlockBytes, kPart = 2 * L::kPartElems;
  constexpr int kStages = kAttnWgStages<kDp, P>;
  static_assert(kAttnWgmmaWidth<kDp>, "no wgmma of this width");
  static_assert(kStages * kStage >= 4 * kAttnWgRows * kDp, "the queries' staging tile fits in the ring");
  static_assert(kStage % 16 == 0, "a packed block is a bulk copy of 16-byte chunks");
  unsigned char* smem = simt::dynamic_shared();
  const AttnTile<kAttnWgRows, kDp, P> qt{reinterpret_cast<uint16_t*>(smem + kStages * kStage)};
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + kStages * kStage + kAttnWgQBytes<kDp, P>);
  uint64_t* empty = full + kStages;
  const int warp = simt::warp();
  const int pair = simt::block_x() / a.q_tiles, n0 = simt::block_x() % a.q_tiles * kAttnWgRows;
  const float* q = attn_pair_rows(a, pair).q;

  attn_wg_ring_init<kStages>(full, empty);
  // Queries: rotated into the padded tile (which also publishes the
  // barriers), then, in the consumers, each warp's 16 rows (16·warp: warp
  // w%4 of warpgroup w/4 holds rows 16(w%4) of the group's 64) as A
  // fragments for every k16 slice.
  attn_wg_fill(qt, reinterpret_cast<float*>(smem), q + n0 * a.q.st, a.q.st, a.N - n0, a.D, attn_table_rows(a.q_rope, n0, a.D));
  const int blocks = (a.M + kBN - 1) / kBN;
  if (!attn_wg_consumer<kStages, kStage>(smem, full, empty, kv, pair, blocks)) return;
  uint32_t qf[kDp / 16][P::kParts][4];
  VL_UNROLL
  for (int ks = 0; ks < kDp / 16; ++ks) attn_a_frag(qt, 16 * warp, ks, qf[ks]);

  // FA3's ping-pong: turn j of a warpgroup issues P_{j-1}·V_{j-1} and S_j =
  // Q·K_jᵀ together, and only after the other warpgroup has issued its
  // turn's products (named barrier 1 + wg: this warpgroup's turn), so one
  // warpgroup's softmax runs while the other's products do. Warpgroup 0
  // opens; each barrier gets as many arrivals as syncs.
  const int wg = warp >> 2;
  float o[kDp / 8][4];
  VL_UNROLL
  for (int j = 0; j < kDp / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  uint32_t pf[kBN / 16][P::kParts][4];
  // A turn, with the products it has as compile-time flags: a wgmma under a
  // run-time condition would make ptxas serialize them all (C7520).
  const auto turn = [&](auto with_pv, auto with_s, int j) {
    constexpr bool kPV = decltype(with_pv)::value, kS = decltype(with_s)::value;
    const int s = j % kStages, prev = (j + kStages - 1) % kStages;
    if (kS) simt::mbarrier_wait(&full[s], (j / kStages) & 1);
    if (wg == 1 || kPV) simt::named_barrier_sync<kAttnWgConsumers>(1 + wg);
    float sc[kBN / 8][4];
    VL_UNROLL
    for (int i = 0; i < kBN / 8; ++i) sc[i][0] = sc[i][1] = sc[i][2] = sc[i][3] = 0.0f;
    if constexpr (kPV) attn_wgmma<P, kDp>(&o[0][0], pf, smem + prev * kStage + P::kParts * kPart, kPart, 128 * (kBN / 8));
    if constexpr (kS) attn_wgmma<P, kBN>(&sc[0][0], qf, smem + s * kStage, kPart, 128 * (kDp / 8));
    if (wg == 0 || kS) simt::named_barrier_arrive<kAttnWgConsumers>(2 - wg);
    attn_wgmma_wait<kDp / 2>(&o[0][0]);
    if constexpr (kPV) {
      // This thread's products on block j - 1 are done: its stage may be refilled.
      simt::mbarrier_arrive(&empty[prev]);
    }
    if constexpr (kS) {
      VL_UNROLL
      for (int i = 0; i < kBN / 2; ++i) simt::wgmma_fence_operand((&sc[0][0])[i]);
      attn_online_softmax<kBN, kDp>(sc, o, m, l, a.M - j * kBN, a.scale_log2);
      attn_acc_to_a<kBN, P>(sc, pf);
    }
  };
  if (blocks > 0) {
    turn(std::false_type{}, std::true_type{}, 0);
    for (int j = 1; j < blocks; ++j) turn(std::true_type{}, std::true_type{}, j);
    turn(std::true_type{}, std::false_type{}, blocks);
  }
  attn_fwd_finish<kDp>(o, m, l, a, pair, n0 + 16 * warp);
}

// The backward kernels' prologue. The block's 128 rows r0.. of x (rotated
// by x_table, the table's rows from r0) and of y, `rows` valid, go into two
// padded tiles after the ring (kStages stages of kStage bytes); the ring's
// barriers (full, empty) are made; then the roles split (attn_wg_consumer:
// the producer streams the pair's `blocks` blocks of `packed`, and gets
// false); each consumer warp gets its 16 rows of both as A fragments.
template <int kDp, typename P, int kStages, int kStage>
VL_DEVICE bool attn_wg_bwd_prologue(unsigned char* smem, uint64_t* full, uint64_t* empty, int b, int h, const AttnTensor& x,
                                    const float* x_table, const AttnTensor& y, int r0, int rows, int D, const uint16_t* packed,
                                    int pair, int blocks, uint32_t (&xf)[kDp / 16][P::kParts][4],
                                    uint32_t (&yf)[kDp / 16][P::kParts][4]) {
  const AttnTile<kAttnWgRows, kDp, P> xt{reinterpret_cast<uint16_t*>(smem + kStages * kStage)},
      yt{reinterpret_cast<uint16_t*>(smem + kStages * kStage + kAttnWgQBytes<kDp, P>)};
  attn_wg_ring_init<kStages>(full, empty);
  const auto rows_of = [&](const AttnTensor& t) { return t.data + b * t.sb + h * t.sh + r0 * t.st; };
  attn_wg_fill(xt, reinterpret_cast<float*>(smem), rows_of(x), x.st, rows, D, x_table);
  attn_wg_fill(yt, reinterpret_cast<float*>(smem), rows_of(y), y.st, rows, D, nullptr);
  if (!attn_wg_consumer<kStages, kStage>(smem, full, empty, packed, pair, blocks)) return false;
  VL_UNROLL
  for (int ks = 0; ks < kDp / 16; ++ks) {
    attn_a_frag(xt, 16 * simt::warp(), ks, xf[ks]);
    attn_a_frag(yt, 16 * simt::warp(), ks, yf[ks]);
  }
  return true;
}

// The Hopper dq kernel: the head widths and arithmetics whose registers fit
// (queries and dOut as A fragments, dq, S and dP accumulators, dS fragments):
// every 16-bit width, the hi/lo split up to D 64.
template <int kDp, typename P>
constexpr bool kAttnWgDqWidth = kAttnWgmmaWidth<kDp> && (P::kParts == 1 || kDp <= 64);

// dq for 128 queries of one (batch, head) on wgmma: grid.x = a.tiles · B ·
// heads (a.tiles = ceil(N / 128)), blockDim.x = kAttnWgThreads,
// kAttnWgSmemBytes<kDp, P, kAttnPackDq> of dynamic shared memory; q and dout rows
// 16-byte aligned (a.vec); kv: attention_pack_kv<kDp, P, kAttnPackDq>'s output for
// the call's keys and values. Warp-specialized as the forward: the producer
// streams the packed key blocks, each consumer warpgroup owns 64 queries,
// keeps them (rotated) and their dOut rows as A fragments, and per key
// block computes S = Q·Kᵀ and dP = dO·Vᵀ, P = exp2(S·scale·log2e −
// lse·log2e), dS = P ⊙ (dP − delta), dQ += dS·K (K transposed in the
// block); dq is scaled and rotated back at the end, as attention_bwd_dq.
template <int kDp, typename P>
VL_GLOBAL void VL_LAUNCH_BOUNDS_1(kAttnWgThreads) attention_bwd_dq_wgmma(const AttnBwdArgs a, const uint16_t* kv) {
  using L = AttnPack<kDp, P, kAttnPackDq>;
  constexpr int kBN = L::kBN, kStage = L::kBlockBytes, kPart = 2 * L::kPartElems, kTensor = P::kParts * kPart;
  constexpr int kStages = kAttnWgStages<kDp, P, kAttnPackDq>;
  static_assert(kAttnWgDqWidth<kDp, P>, "no wgmma dq kernel of this width and arithmetic");
  static_assert(kStages * kStage >= 4 * kAttnWgRows * kDp, "the queries' staging tile fits in the ring");
  unsigned char* smem = simt::dynamic_shared();
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + kStages * kStage + 2 * kAttnWgQBytes<kDp, P>);
  uint64_t* empty = full + kStages;
  const int warp = simt::warp();
  const int pair = simt::block_x() / a.tiles, n0 = simt::block_x() % a.tiles * kAttnWgRows;
  const int b = pair / a.H, h = pair % a.H;
  // The queries (rotated) and dOut rows as each warp's A fragments.
  const int blocks = (a.M + kBN - 1) / kBN;
  uint32_t qf[kDp / 16][P::kParts][4], df[kDp / 16][P::kParts][4];
  if (!attn_wg_bwd_prologue<kDp, P, kStages, kStage>(smem, full, empty, b, h, a.q, attn_table_rows(a.q_rope, n0, a.D), a.dout, n0,
                                                     a.N - n0, a.D, kv, pair, blocks, qf, df))
    return;
  const int row0 = n0 + 16 * warp;
  float lse2[2], delta[2];
  attn_row_stats(a, pair, row0, lse2, delta);
  float dq[kDp / 8][4];
  VL_UNROLL
  for (int j = 0; j < kDp / 8; ++j) dq[j][0] = dq[j][1] = dq[j][2] = dq[j][3] = 0.0f;
  for (int j = 0; j < blocks; ++j) {
    const int s = j % kStages;
    simt::mbarrier_wait(&full[s], (j / kStages) & 1);
    const unsigned char* block = smem + s * kStage;
    float sc[kBN / 8][4], dp[kBN / 8][4];
    attn_wgmma_scores<P, kBN, kDp>(sc, dp, qf, df, block, kPart, kTensor);
    // Keys past M are zero rows of K: whatever dS they get adds nothing to dQ.
    VL_UNROLL
    for (int c = 0; c < kBN / 8; ++c)
      VL_UNROLL
      for (int i = 0; i < 4; ++i) {
        const float p = exp2f(sc[c][i] * a.scale_log2 - lse2[i >> 1]);
        dp[c][i] = p * (dp[c][i] - delta[i >> 1]);
      }
    uint32_t f[kBN / 16][P::kParts][4];
    attn_acc_to_a<kBN, P>(dp, f);
    attn_wgmma<P, kDp>(&dq[0][0], f, block + 2 * kTensor, kPart, 128 * (kBN / 8));
    attn_wgmma_wait<kDp / 2>(&dq[0][0]);
    // This thread's products on the block are done: its stage may be refilled.
    simt::mbarrier_arrive(&empty[s]);
  }
  attn_store_rows<kDp>(dq, a.dq.data + b * a.dq.sb + h * a.dq.sh, a.dq.st, row0, a.N, a.D, a.scale, a.q_rope);
}

// The Hopper dk/dv kernel: the widths and arithmetics whose registers fit
// (keys and values as A fragments, dk and dv, Sᵀ and dPᵀ accumulators, Pᵀ
// and dSᵀ fragments; 32 queries per block beyond D 64): 16-bit up to D 96
// (D 128 spills), the split up to D 64.
template <int kDp, typename P>
constexpr bool kAttnWgDkdvWidth = kAttnWgmmaWidth<kDp> && (P::kParts == 1 ? kDp <= 96 : kDp <= 64);

// The dk/dv kernel's per-block stats (the tail of each kAttnPackDkdv block):
// lse·log2e and delta of the block's kBN queries, 0 past N. One thread per
// (pair, block, query) e < total; grid.x = ceil(total / 256), blockDim.x = 256.
template <int kDp, typename P>
VL_GLOBAL void VL_LAUNCH_BOUNDS(256) attention_pack_stats(const AttnBwdArgs a, int64_t total, uint16_t* VL_RESTRICT out) {
  using L = AttnPack<kDp, P, kAttnPackDkdv>;
  const int64_t e = static_cast<int64_t>(simt::block_x()) * 256 + simt::thread_x();
  if (e >= total) return;
  const int i = static_cast<int>(e % L::kBN), blocks = (a.N + L::kBN - 1) / L::kBN;
  const int64_t pb = e / L::kBN, pair = pb / blocks;
  const int n = static_cast<int>(pb % blocks) * L::kBN + i;
  float* stats = reinterpret_cast<float*>(out + pb * (L::kBlockBytes / 2) + (L::kBlockBytes - L::kStatsBytes) / 2);
  stats[i] = n < a.N ? a.lse[pair * a.N + n] * kLog2e : 0.0f;
  stats[L::kBN + i] = n < a.N ? a.delta[pair * a.N + n] : 0.0f;
}

// dk, dv for 128 keys of one (batch, head) on wgmma: grid.x = a.tiles · B ·
// heads (a.tiles = ceil(M / 128)), blockDim.x = kAttnWgThreads,
// kAttnWgSmemBytes<kDp, P, kAttnPackDkdv> of dynamic shared memory; k and v
// rows 16-byte aligned (a.vec); qd: attention_pack_kv<kDp, P, kAttnPackDkdv>
// of the queries (X, rotated) and dOut (Y), with attention_pack_stats.
// Warp-specialized as the forward: each consumer warpgroup owns 64 keys,
// keeps them (rotated) and their values as A fragments, and per query block
// computes Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ, Pᵀ = exp2(Sᵀ·scale·log2e −
// lse·log2e), dSᵀ = Pᵀ ⊙ (dPᵀ − delta), dV += Pᵀ·dO and dK += dSᵀ·Q; dk is
// scaled and rotated back at the end, as attention_bwd_dkdv.
template <int kDp, typename P>
VL_GLOBAL void VL_LAUNCH_BOUNDS_1(kAttnWgThreads) attention_bwd_dkdv_wgmma(const AttnBwdArgs a, const uint16_t* qd) {
  using L = AttnPack<kDp, P, kAttnPackDkdv>;
  constexpr int kBS = L::kBN, kStage = L::kBlockBytes, kPart = 2 * L::kPartElems, kTensor = P::kParts * kPart;
  constexpr int kStages = kAttnWgStages<kDp, P, kAttnPackDkdv>;
  static_assert(kAttnWgDkdvWidth<kDp, P>, "no wgmma dk/dv kernel of this width and arithmetic");
  static_assert(kStages * kStage >= 4 * kAttnWgRows * kDp, "the keys' staging tile fits in the ring");
  unsigned char* smem = simt::dynamic_shared();
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + kStages * kStage + 2 * kAttnWgQBytes<kDp, P>);
  uint64_t* empty = full + kStages;
  const int warp = simt::warp(), t = simt::lane() & 3;
  const int pair = simt::block_x() / a.tiles, m0 = simt::block_x() % a.tiles * kAttnWgRows;
  const int b = pair / a.H, h = pair % a.H;
  // The keys (rotated) and values as each warp's A fragments.
  const int blocks = (a.N + kBS - 1) / kBS;
  uint32_t kf[kDp / 16][P::kParts][4], vf[kDp / 16][P::kParts][4];
  if (!attn_wg_bwd_prologue<kDp, P, kStages, kStage>(smem, full, empty, b, h, a.k, attn_table_rows(a.k_rope, m0, a.D), a.v, m0,
                                                     a.M - m0, a.D, qd, pair, blocks, kf, vf))
    return;
  float dk[kDp / 8][4], dv[kDp / 8][4];
  VL_UNROLL
  for (int j = 0; j < kDp / 8; ++j) dk[j][0] = dk[j][1] = dk[j][2] = dk[j][3] = dv[j][0] = dv[j][1] = dv[j][2] = dv[j][3] = 0.0f;
  for (int j = 0; j < blocks; ++j) {
    const int s = j % kStages;
    simt::mbarrier_wait(&full[s], (j / kStages) & 1);
    const unsigned char* block = smem + s * kStage;
    const float* lse = reinterpret_cast<const float*>(block + L::kTensors * kTensor);
    const float* delta = lse + kBS;
    float sc[kBS / 8][4], dp[kBS / 8][4];
    attn_wgmma_scores<P, kBS, kDp>(sc, dp, kf, vf, block, kPart, kTensor);
    // Queries past N are zero rows of Q and dO: they add nothing to dV or dK.
    VL_UNROLL
    for (int c = 0; c < kBS / 8; ++c)
      VL_UNROLL
      for (int i = 0; i < 4; ++i) {
        const int col = 8 * c + 2 * t + (i & 1);
        sc[c][i] = exp2f(sc[c][i] * a.scale_log2 - lse[col]);
        dp[c][i] = sc[c][i] * (dp[c][i] - delta[col]);
      }
    uint32_t pf[kBS / 16][P::kParts][4], sf[kBS / 16][P::kParts][4];
    attn_acc_to_a<kBS, P>(sc, pf);
    attn_acc_to_a<kBS, P>(dp, sf);
    attn_wgmma<P, kDp>(&dv[0][0], pf, block + 2 * kTensor, kPart, 128 * (kBS / 8));
    attn_wgmma<P, kDp>(&dk[0][0], sf, block + 3 * kTensor, kPart, 128 * (kBS / 8));
    attn_wgmma_wait<kDp / 2>(&dv[0][0]);
    VL_UNROLL
    for (int i = 0; i < kDp / 2; ++i) simt::wgmma_fence_operand((&dk[0][0])[i]);
    // This thread's products on the block are done: its stage may be refilled.
    simt::mbarrier_arrive(&empty[s]);
  }
  const int row0 = m0 + 16 * warp;
  attn_store_rows<kDp>(dk, a.dk.data + b * a.dk.sb + h * a.dk.sh, a.dk.st, row0, a.M, a.D, a.scale, a.k_rope);
  attn_store_rows<kDp>(dv, a.dv.data + b * a.dv.sb + h * a.dv.sh, a.dv.st, row0, a.M, a.D, 1.0f, nullptr);
}

}  // namespace kernels
}  // namespace cuda
}  // namespace vl
