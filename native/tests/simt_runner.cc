#include "tests/simt_runner.h"

#include <ucontext.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/half.h"
#include "cuda/simt.cuh"

namespace vl {
namespace simt {
namespace {

// Spin: polling an mbarrier (runnable again at once, but no progress by itself).
enum class Wait { None, Spin, Block, Warp, Group, Done };

constexpr size_t kStackBytes = 256 * 1024;
constexpr int kSlotWords = 16;

struct Fiber {
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;
  Wait wait = Wait::None;
};

struct Runner {
  Dim grid, block;
  int bx = 0, by = 0;
  std::vector<Fiber> fibers;
  // What each thread hands to a warp collective.
  std::vector<std::array<uint64_t, kSlotWords>> slots;
  ucontext_t scheduler;
  int current = -1;
  const std::function<void()>* body = nullptr;
  std::string error;
};

Runner* g_runner = nullptr;
// Bumped by every mbarrier arrival and TMA landing: a block whose threads
// only spin while it stays put can never go on.
long g_progress = 0;

Runner& runner() {
  if (!g_runner) throw std::runtime_error("simt: a kernel function was called outside simt::launch");
  return *g_runner;
}

void check_nothing_in_flight();
bool land_oldest_tma();

void fiber_main() {
  Runner& r = *g_runner;
  try {
    (*r.body)();
    check_nothing_in_flight();
  } catch (const std::exception& e) {
    if (r.error.empty()) r.error = e.what();
  }
  r.fibers[r.current].wait = Wait::Done;
  swapcontext(&r.fibers[r.current].ctx, &r.scheduler);  // never resumed
}

void yield(Wait w) {
  Runner& r = runner();
  r.fibers[r.current].wait = w;
  swapcontext(&r.fibers[r.current].ctx, &r.scheduler);
}

std::string where(const Runner& r) {
  return "block (" + std::to_string(r.bx) + ", " + std::to_string(r.by) + ")";
}

// Two-phase warp collective: every lane publishes, then reads what it needs,
// then waits again so no lane overwrites a slot another has yet to read.
// A warpgroup collective (kWidth = 128) is the same over 4 warps.
template <int kWidth = 32, typename Publish, typename Read>
auto warp_collective(Publish publish, Read read) {
  constexpr Wait kWait = kWidth == 32 ? Wait::Warp : Wait::Group;
  const char* what = kWidth == 32 ? "warp" : "warpgroup";
  Runner& r = runner();
  publish(r.slots[r.current]);
  yield(kWait);
  const int base = (r.current / kWidth) * kWidth;
  const int lanes = std::min(kWidth, static_cast<int>(r.fibers.size()) - base);
  if (lanes != kWidth)
    throw std::runtime_error(std::string("simt: a ") + what + " collective in a partial " + what + " (" + std::to_string(lanes) + " threads) of " + where(r));
  auto result = read(&r.slots[base], r.current - base);
  yield(kWait);
  return result;
}

uint16_t load_b16(const void* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// The 128B swizzle of TMA boxes and wgmma descriptors: in each 1024 bytes (8
// rows of 128), 16-byte chunk c of row r is stored at chunk c ^ r.
uint32_t swizzle_128b(uint32_t offset) { return offset ^ (((offset >> 7) & 7u) << 4); }

float bf16_value(uint32_t reg, int half) {
  const uint32_t bits = (half ? reg >> 16 : reg & 0xffffu) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
float f16_value(uint32_t reg, int half) { return f16_to_f32(static_cast<uint16_t>(half ? reg >> 16 : reg & 0xffffu)); }

}  // namespace

int thread_x() { return runner().current; }
int block_x() { return runner().bx; }
int block_y() { return runner().by; }
int block_dim_x() { return runner().block.x; }
int grid_dim_x() { return runner().grid.x; }
void sync_threads() { yield(Wait::Block); }

float shfl_xor(float v, int mask) {
  return warp_collective([&](auto& s) { std::memcpy(&s[0], &v, 4); },
                         [&](auto* lanes, int lane) {
                           float out;
                           std::memcpy(&out, &lanes[(lane ^ mask) & 31][0], 4);
                           return out;
                         });
}

float shfl(float v, int src_lane) {
  return warp_collective([&](auto& s) { std::memcpy(&s[0], &v, 4); },
                         [&](auto* lanes, int) {
                           float out;
                           std::memcpy(&out, &lanes[src_lane & 31][0], 4);
                           return out;
                         });
}

unsigned ballot(bool p) {
  return warp_collective([&](auto& s) { s[0] = p ? 1 : 0; },
                         [&](auto* lanes, int) {
                           unsigned bits = 0;
                           for (int l = 0; l < 32; ++l) bits |= static_cast<unsigned>(lanes[l][0]) << l;
                           return bits;
                         });
}

namespace {

// The tensor-core product on operands decoded by `value` (bf16 or fp16 bits):
// exact products (a bf16 or fp16 product fits in an f32) summed in f32.
template <typename Value>
void mma_m16n8k16(float acc[4], const uint32_t a[4], const uint32_t b[2], Value value) {
  struct Out {
    float d[4];
  };
  const Out out = warp_collective(
      [&](auto& s) {
        for (int i = 0; i < 4; ++i) s[i] = a[i];
        for (int i = 0; i < 2; ++i) s[4 + i] = b[i];
      },
      [&](auto* lanes, int lane) {
        // Rebuild the 16x16 A and 16x8 B tiles from every lane's fragments.
        float A[16][16], B[16][8];
        for (int l = 0; l < 32; ++l) {
          const int g = l >> 2, t = l & 3;
          for (int i = 0; i < 8; ++i)
            A[g + 8 * ((i >> 1) & 1)][2 * t + (i & 1) + 8 * (i >> 2)] = value(static_cast<uint32_t>(lanes[l][i >> 1]), i & 1);
          for (int i = 0; i < 4; ++i)
            B[2 * t + (i & 1) + 8 * (i >> 1)][g] = value(static_cast<uint32_t>(lanes[l][4 + (i >> 1)]), i & 1);
        }
        Out o;
        const int g = lane >> 2, t = lane & 3;
        for (int i = 0; i < 4; ++i) {
          const int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
          float sum = acc[i];
          for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];
          o.d[i] = sum;
        }
        return o;
      });
  for (int i = 0; i < 4; ++i) acc[i] = out.d[i];
}

}  // namespace

void mma_bf16_m16n8k16(float acc[4], const uint32_t a[4], const uint32_t b[2]) { mma_m16n8k16(acc, a, b, bf16_value); }
void mma_f16_m16n8k16(float acc[4], const uint32_t a[4], const uint32_t b[2]) { mma_m16n8k16(acc, a, b, f16_value); }

namespace {

// Four 8x8 b16 matrices; lanes 8m..8m+7 give the row addresses of matrix m.
// Plain: register m of a lane holds row lane/4, columns 2(lane%4) and +1.
// Transposed: rows 2(lane%4) and +1 at column lane/4.
void ldmatrix_x4_impl(uint32_t r[4], const void* row_address, bool trans) {
  struct Out {
    uint32_t r[4];
  };
  const Out out = warp_collective(
      [&](auto& s) { s[0] = reinterpret_cast<uintptr_t>(row_address); },
      [&](auto* lanes, int lane) {
        Out o;
        const auto row = [&](int m, int i) {
          return reinterpret_cast<const char*>(static_cast<uintptr_t>(lanes[8 * m + i][0]));
        };
        for (int m = 0; m < 4; ++m) {
          const char* lo = trans ? row(m, 2 * (lane % 4)) + 2 * (lane / 4) : row(m, lane / 4) + 4 * (lane % 4);
          const char* hi = trans ? row(m, 2 * (lane % 4) + 1) + 2 * (lane / 4) : lo + 2;
          o.r[m] = load_b16(lo) | (static_cast<uint32_t>(load_b16(hi)) << 16);
        }
        return o;
      });
  for (int i = 0; i < 4; ++i) r[i] = out.r[i];
}

}  // namespace

void ldmatrix_x4(uint32_t r[4], const void* row_address) { ldmatrix_x4_impl(r, row_address, false); }

// ---- GEMM pipeline: dynamic shared memory, cp.async, bf16 packing ----
namespace {

struct AsyncCopy {
  void* dst;
  const void* src;
  int src_bytes;
  long group;  // the commit count of the thread when it was issued
};
struct AsyncState {
  std::vector<AsyncCopy> pending;
  long committed = 0;
  // Bytes landed by this thread's copies since its last fence_proxy_async:
  // not yet visible to the async proxy (wgmma's shared-memory reads).
  std::vector<std::pair<const char*, const char*>> unfenced;
};
std::vector<AsyncState> g_async;  // per thread of the running block

// A wgmma in flight: this thread's rows of A (decoded), where B and acc are.
struct WgmmaOp {
  float* acc;
  float a[2][16];
  uint64_t desc;
  bool f16;  // operand format: fp16, else bf16
  int n;     // B's columns
  long group;
};
struct WgmmaState {
  std::vector<WgmmaOp> pending;
  long committed = 0;
};
std::vector<WgmmaState> g_wgmma;  // per thread of the running block

alignas(1024) unsigned char g_dynamic_shared[kMaxDynamicShared];
// Shared memory as the async proxy last saw it: a copy taken at every
// fence_proxy_async. A wgmma whose B bytes differ from it reads stores
// (st.shared from registers) that no fence made visible to wgmma.
unsigned char g_async_view[kMaxDynamicShared];

// An mbarrier: arrivals still missing in the current phase, transaction
// bytes still owed, and how many phases have completed.
struct Barrier {
  int count = 0, pending = 0;
  int64_t tx = 0;
  long phases = 0;
};
std::map<uint32_t, Barrier> g_barriers;  // by shared-memory offset

// A TMA copy issued and not landed yet: a box of `map` at c, or (src set)
// `bytes` contiguous bytes from src.
struct TmaCopy {
  uint32_t dst, bar;
  TensorMap map;
  int64_t c[3];
  const void* src;
  uint32_t bytes;
};
std::vector<TmaCopy> g_tma;

// A named barrier: its thread count, arrivals so far, completions.
struct NamedBarrier {
  int threads = 0, arrived = 0;
  long generation = 0;
};
NamedBarrier g_named[16];

void begin_tma_block() {
  g_barriers.clear();
  g_tma.clear();
  for (NamedBarrier& b : g_named) b = NamedBarrier();
}

// A new block: no copies in flight, shared memory full of NaNs.
void begin_block(int threads) {
  begin_tma_block();
  g_async.assign(static_cast<size_t>(threads), AsyncState());
  g_wgmma.assign(static_cast<size_t>(threads), WgmmaState());
  std::memset(g_dynamic_shared, 0xff, sizeof g_dynamic_shared);
  std::memset(g_async_view, 0xff, sizeof g_async_view);
}

}  // namespace

unsigned char* dynamic_shared() { return g_dynamic_shared; }

void cp_async_16(void* smem, const void* gmem, int src_bytes) {
  Runner& r = runner();
  if (reinterpret_cast<uintptr_t>(smem) % 16 || (src_bytes > 0 && reinterpret_cast<uintptr_t>(gmem) % 16))
    throw std::runtime_error("simt: cp_async_16 needs 16-byte aligned addresses");
  if (src_bytes < 0 || src_bytes > 16) throw std::runtime_error("simt: cp_async_16 copies 0 to 16 bytes, got " + std::to_string(src_bytes));
  AsyncState& st = g_async[r.current];
  st.pending.push_back({smem, gmem, src_bytes, st.committed});
}

void cp_async_commit() { ++g_async[runner().current].committed; }

namespace {
// The wait_group of cp.async and wgmma: completes (`done`) the pending
// operations of every group but the newest n, keeps the rest (and those not
// committed yet) in flight.
template <typename Op, typename Done>
void retire_groups(std::vector<Op>& pending, long committed, int n, Done done) {
  std::vector<Op> later;
  for (const Op& op : pending) {
    if (op.group >= committed - n)
      later.push_back(op);
    else
      done(op);
  }
  pending.swap(later);
}
}  // namespace

void cp_async_wait_groups(int n) {
  AsyncState& st = g_async[runner().current];
  retire_groups(st.pending, st.committed, n, [&](const AsyncCopy& c) {
    std::memcpy(c.dst, c.src, static_cast<size_t>(c.src_bytes));
    std::memset(static_cast<char*>(c.dst) + c.src_bytes, 0, static_cast<size_t>(16 - c.src_bytes));
    st.unfenced.emplace_back(static_cast<const char*>(c.dst), static_cast<const char*>(c.dst) + 16);
  });
}

uint32_t pack_bf16x2(float lo, float hi) { return f32_to_bf16(lo) | static_cast<uint32_t>(f32_to_bf16(hi)) << 16; }
uint32_t pack_f16x2(float lo, float hi) { return f32_to_f16(lo) | static_cast<uint32_t>(f32_to_f16(hi)) << 16; }

void launch(Dim grid, Dim block, const std::function<void()>& body) {
  if (g_runner) throw std::runtime_error("simt: launch inside a kernel");
  if (block.x < 1 || block.x > 1024 || block.y != 1) throw std::runtime_error("simt: blocks are 1-D with 1 to 1024 threads");
  Runner r;
  r.grid = grid;
  r.block = block;
  r.body = &body;
  r.fibers.resize(block.x);
  r.slots.resize(block.x);
  for (auto& f : r.fibers) f.stack.reset(new char[kStackBytes]);
  g_runner = &r;
  struct Reset {
    ~Reset() { g_runner = nullptr; }
  } reset;
  for (r.by = 0; r.by < grid.y; ++r.by) {
    for (r.bx = 0; r.bx < grid.x; ++r.bx) {
      begin_block(block.x);
      for (auto& f : r.fibers) {
        f.wait = Wait::None;
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack.get();
        f.ctx.uc_stack.ss_size = kStackBytes;
        f.ctx.uc_link = nullptr;
        makecontext(&f.ctx, fiber_main, 0);
      }
      for (;;) {
        const long progress = g_progress;
        bool fresh = false;  // a thread ran that was not polling a barrier
        for (int t = 0; t < block.x; ++t) {
          if (r.fibers[t].wait != Wait::None && r.fibers[t].wait != Wait::Spin) continue;
          fresh = fresh || r.fibers[t].wait == Wait::None;
          r.current = t;
          swapcontext(&r.scheduler, &r.fibers[t].ctx);
          if (!r.error.empty()) throw std::runtime_error("simt: " + where(r) + ", thread " + std::to_string(t) + ": " + r.error);
        }
        int done = 0, at_block = 0;
        for (const auto& f : r.fibers) {
          done += f.wait == Wait::Done;
          at_block += f.wait == Wait::Block;
        }
        if (done == block.x) {
          if (!g_tma.empty()) throw std::runtime_error("simt: " + where(r) + " ended with TMA copies in flight");
          for (int id = 1; id < 16; ++id)
            if (g_named[id].arrived)
              throw std::runtime_error("simt: " + where(r) + " ended with " + std::to_string(g_named[id].arrived) + " arrivals at named barrier " +
                                       std::to_string(id) + " that never completed");
          break;
        }
        bool released = false;
        // A collective completes when every thread of its warp (32) or warpgroup (128) is at it.
        const auto release = [&](int width, Wait kind, const char* unit, const char* members) {
          for (int w = 0; w * width < block.x; ++w) {
            const int n = std::min(width, block.x - w * width);
            int at = 0, spinning = 0;
            for (int l = 0; l < n; ++l) {
              at += r.fibers[w * width + l].wait == kind;
              spinning += r.fibers[w * width + l].wait == Wait::Spin;
            }
            if (at == 0) continue;
            if (at != n) {
              // The rest may still come: once released from a warp collective, or from polling a barrier.
              if ((kind == Wait::Group && released) || spinning) continue;
              throw std::runtime_error("simt: " + where(r) + ", " + unit + " " + std::to_string(w) + ": " + std::to_string(at) + " of " +
                                       std::to_string(n) + " " + members + " reached a " + unit + " collective, the others a barrier or the end (divergent " +
                                       unit + ")");
            }
            for (int l = 0; l < n; ++l) r.fibers[w * width + l].wait = Wait::None;
            released = true;
          }
        };
        release(32, Wait::Warp, "warp", "lanes");
        release(128, Wait::Group, "warpgroup", "threads");
        if (released) continue;
        // __syncthreads completes when every thread is at it; one that has returned never arrives.
        if (at_block + done == block.x && done > 0) {
          throw std::runtime_error("simt: " + where(r) + ": " + std::to_string(at_block) + " threads wait at sync_threads while " +
                                   std::to_string(done) + " have returned (divergent barrier)");
        }
        if (at_block == block.x) {
          for (auto& f : r.fibers) f.wait = Wait::None;
          continue;
        }
        if (fresh || g_progress != progress) continue;  // a polled barrier may have moved
        if (land_oldest_tma()) continue;
        throw std::runtime_error("simt: " + where(r) + ": no thread can run (deadlock" +
                                 (g_barriers.empty() ? std::string(")") : ", or a thread waits on an mbarrier phase that never completes)"));
      }
    }
  }
}

// ---- attention: transposed ldmatrix ----
void ldmatrix_x4_trans(uint32_t r[4], const void* row_address) { ldmatrix_x4_impl(r, row_address, true); }

// ---- Hopper: warpgroup MMA ----

uint32_t smem_address(const void* p) {
  const auto* c = static_cast<const unsigned char*>(p);
  if (c < g_dynamic_shared || c >= g_dynamic_shared + kMaxDynamicShared)
    throw std::runtime_error("simt: smem_address of a pointer outside the block's dynamic shared memory");
  return static_cast<uint32_t>(c - g_dynamic_shared);
}

void fence_proxy_async() {
  g_async[runner().current].unfenced.clear();
  std::memcpy(g_async_view, g_dynamic_shared, sizeof g_async_view);
}
void wgmma_fence() {}
void wgmma_commit() { ++g_wgmma[runner().current].committed; }

namespace {

// Where element (k, n) of a wgmma B operand is: no-swizzle K-major core
// matrices (8 n x 8 k, rows of 16 bytes) at start + (n/8)*sbo + (k/8)*lbo.
// 128B swizzle (mode 1), K-major: rows of 128 bytes, 8-row groups sbo
// apart, k at 2k from the start, the whole address swizzled (lbo unused).
const unsigned char* wgmma_b_element(uint64_t desc, int k, int n) {
  const uint64_t mode = desc >> 62;
  if (mode > 1) throw std::runtime_error("simt: wgmma descriptors with swizzle mode " + std::to_string(mode) + " are not emulated (0: none, 1: 128B)");
  const uint64_t start = (desc & 0x3fff) << 4, lbo = ((desc >> 16) & 0x3fff) << 4, sbo = ((desc >> 32) & 0x3fff) << 4;
  if (mode == 1 && start % 128 + 32 > 128) throw std::runtime_error("simt: a 128B-swizzled wgmma descriptor whose k16 slice crosses its 128-byte row");
  const uint64_t at = mode == 1 ? swizzle_128b(static_cast<uint32_t>(start + (n / 8) * sbo + (n % 8) * 128 + k * 2))
                                : start + (n / 8) * sbo + (k / 8) * lbo + (n % 8) * 16 + (k % 8) * 2;
  if (at + 2 > static_cast<uint64_t>(kMaxDynamicShared))
    throw std::runtime_error("simt: a wgmma descriptor reaches past the dynamic shared memory (byte " + std::to_string(at) + ")");
  return g_dynamic_shared + at;
}

// Every byte of B must be visible to the async proxy: fenced by the thread
// whose cp.async wrote it, and no store since the last fence changed it.
void check_b_fenced(uint64_t desc, int n) {
  // The bytes B spans (swizzled, its elements are not in address order).
  const unsigned char *lo = wgmma_b_element(desc, 0, 0), *hi = lo;
  for (int k = 0; k < 16; ++k)
    for (int j = 0; j < n; ++j) {
      const unsigned char* e = wgmma_b_element(desc, k, j);
      lo = std::min(lo, e);
      hi = std::max(hi, e + 2);
    }
  for (const AsyncState& st : g_async)
    for (const auto& range : st.unfenced)
      if (range.first < reinterpret_cast<const char*>(hi) && reinterpret_cast<const char*>(lo) < range.second)
        throw std::runtime_error("simt: wgmma reads shared memory that a copy wrote without a following fence_proxy_async");
  for (int k = 0; k < 16; ++k)
    for (int j = 0; j < n; ++j) {
      const unsigned char* e = wgmma_b_element(desc, k, j);
      if (std::memcmp(e, g_async_view + (e - g_dynamic_shared), 2) != 0)
        throw std::runtime_error("simt: wgmma reads shared memory stored to after the last fence_proxy_async");
    }
}

// acc += A * B for one retired wgmma: B read from shared memory now, as late as a GPU may read it.
void retire(const WgmmaOp& op) {
  const int q = runner().current % 4;
  for (int j = 0; j < op.n / 8; ++j)
    for (int h = 0; h < 2; ++h)
      for (int e = 0; e < 2; ++e) {
        const int n = 8 * j + 2 * q + e;
        float sum = op.acc[4 * j + 2 * h + e];
        for (int k = 0; k < 16; ++k) {
          const uint16_t bits = load_b16(wgmma_b_element(op.desc, k, n));
          sum += op.a[h][k] * (op.f16 ? f16_value(bits, 0) : bf16_value(bits, 0));
        }
        op.acc[4 * j + 2 * h + e] = sum;
      }
}

}  // namespace

void wgmma_m64nNk16(float* acc, const uint32_t a[4], uint64_t desc, bool f16, int n) {
  if (n < 8 || n > 256 || n % 8) throw std::runtime_error("simt: wgmma m64nNk16 takes N = 8..256 in steps of 8, got " + std::to_string(n));
  struct Rows {
    float a[2][16];
  };
  const auto value = [&](uint32_t reg, int half) { return f16 ? f16_value(reg, half) : bf16_value(reg, half); };
  const Rows rows = warp_collective<128>(
      [&](auto& s) {
        for (int i = 0; i < 4; ++i) s[i] = a[i];
        s[4] = desc;
      },
      [&](auto* threads, int idx) {
        for (int t = 0; t < 128; ++t)
          if (threads[t][4] != desc) throw std::runtime_error("simt: the wgmma descriptors of a warpgroup differ (they must be the same)");
        if (idx == 0) check_b_fenced(desc, n);
        // Rows g and g + 8 of this thread's warp are held by its lanes 4g..4g+3 (mma A fragment layout).
        Rows out;
        const int warp = idx / 32, g = (idx % 32) / 4;
        for (int h = 0; h < 2; ++h)
          for (int k = 0; k < 16; ++k) {
            const int t = (k & 7) >> 1, reg = h + 2 * (k >> 3);
            out.a[h][k] = value(static_cast<uint32_t>(threads[warp * 32 + 4 * g + t][reg]), k & 1);
          }
        return out;
      });
  WgmmaState& st = g_wgmma[runner().current];
  WgmmaOp op{acc, {}, desc, f16, n, st.committed};
  std::memcpy(op.a, rows.a, sizeof op.a);
  st.pending.push_back(op);
}

void wgmma_wait_groups(int n) {
  WgmmaState& st = g_wgmma[runner().current];
  retire_groups(st.pending, st.committed, n, retire);
}

// ---- Hopper: mbarriers and TMA ----
namespace {

Barrier& barrier_at(uint64_t* bar, const char* what) {
  const uint32_t at = smem_address(bar);
  if (at % 8) throw std::runtime_error(std::string("simt: ") + what + " on an mbarrier that is not 8-byte aligned");
  auto it = g_barriers.find(at);
  if (it == g_barriers.end()) throw std::runtime_error(std::string("simt: ") + what + " on shared memory that mbarrier_init never made a barrier");
  return it->second;
}

// The phase completes once every arrival and every expected byte has come.
void settle(Barrier& b) {
  ++g_progress;
  if (b.pending == 0 && b.tx == 0) {
    ++b.phases;
    b.pending = b.count;
  }
}

void arrive(Barrier& b) {
  if (b.pending == 0) throw std::runtime_error("simt: an mbarrier got more arrivals in a phase than its count");
  --b.pending;
  settle(b);
}

}  // namespace

void mbarrier_init(uint64_t* bar, int count) {
  const uint32_t at = smem_address(bar);
  if (at % 8) throw std::runtime_error("simt: mbarrier_init on shared memory that is not 8-byte aligned");
  if (count < 1 || count > (1 << 20) - 1) throw std::runtime_error("simt: mbarrier_init takes a count of 1 to 2^20 - 1, got " + std::to_string(count));
  Barrier& b = g_barriers[at];
  b.count = b.pending = count;
  b.tx = 0;
  b.phases = 0;
  ++g_progress;
}

void mbarrier_arrive(uint64_t* bar) { arrive(barrier_at(bar, "mbarrier_arrive")); }

void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  Barrier& b = barrier_at(bar, "mbarrier_arrive_expect_tx");
  b.tx += bytes;
  arrive(b);
}

bool mbarrier_try_wait(uint64_t* bar, uint32_t parity) {
  // The phase of that parity is done when the current (incomplete) phase has the other one.
  if ((barrier_at(bar, "mbarrier_try_wait").phases & 1) != (parity & 1)) {
    ++g_progress;  // the thread goes on
    return true;
  }
  yield(Wait::Spin);
  return false;
}

void named_barrier(int id, int threads, bool wait) {
  if (id < 1 || id > 15) throw std::runtime_error("simt: named barriers are 1 to 15 (0 is sync_threads), got " + std::to_string(id));
  if (threads < 32 || threads % 32 || threads > runner().block.x)
    throw std::runtime_error("simt: a named barrier of " + std::to_string(threads) + " threads (a multiple of 32 up to the block's)");
  NamedBarrier& b = g_named[id];
  if (b.arrived > 0 && b.threads != threads)
    throw std::runtime_error("simt: named barrier " + std::to_string(id) + " reached with " + std::to_string(threads) + " threads while it counts to " +
                             std::to_string(b.threads));
  b.threads = threads;
  const long generation = b.generation;
  ++g_progress;
  if (++b.arrived == threads) {
    b.arrived = 0;
    ++b.generation;
  }
  while (wait && b.generation == generation) yield(Wait::Spin);
}

void setmaxnreg_group(int n) {
  if (n < 24 || n > 256 || n % 8) throw std::runtime_error("simt: setmaxnreg takes 24 to 256 registers in steps of 8, got " + std::to_string(n));
  warp_collective<128>([](auto&) {}, [](auto*, int) { return 0; });
}

std::string encode_tensor_map(TensorMap* out, const TensorMapSpec& s) {
  if (s.rank < 1 || s.rank > 3) return "rank " + std::to_string(s.rank) + " (1 to 3 emulated)";
  if (s.elem_bytes != 2 && s.elem_bytes != 4) return "elements of " + std::to_string(s.elem_bytes) + " bytes (2 or 4 emulated)";
  if (reinterpret_cast<uintptr_t>(s.base) % 16) return "a base address that is not 16-byte aligned";
  for (int d = 0; d < s.rank; ++d) {
    if (s.dims[d] < 1 || s.dims[d] > (uint64_t{1} << 32)) return "dimension " + std::to_string(d) + " of " + std::to_string(s.dims[d]) + " (1 to 2^32)";
    if (s.box[d] < 1 || s.box[d] > 256) return "a box of " + std::to_string(s.box[d]) + " along dimension " + std::to_string(d) + " (1 to 256)";
  }
  for (int d = 0; d + 1 < s.rank; ++d)
    if (s.strides[d] % 16 || s.strides[d] >= (uint64_t{1} << 40)) return "a stride of " + std::to_string(s.strides[d]) + " bytes (multiples of 16 below 2^40)";
  // The 128B swizzle takes inner box rows of at most 128 bytes; the runner emulates exactly 128.
  if (s.box[0] * static_cast<uint32_t>(s.elem_bytes) != 128) return "an inner box of " + std::to_string(s.box[0] * s.elem_bytes) + " bytes (128 emulated)";
  out->base = s.base;
  out->elem_bytes = s.elem_bytes;
  out->rank = s.rank;
  for (int d = 0; d < 3; ++d) {
    out->dims[d] = d < s.rank ? s.dims[d] : 1;
    out->box[d] = d < s.rank ? s.box[d] : 1;
  }
  for (int d = 0; d < 2; ++d) out->strides[d] = d + 1 < s.rank ? s.strides[d] : 0;
  return "";
}

void tma_load_3d(void* dst, const TensorMap* map, int c0, int c1, int c2, uint64_t* bar) {
  const uint32_t at = smem_address(dst);
  if (at % 1024) throw std::runtime_error("simt: tma_load_3d into shared memory that is not 1024-byte aligned (the 128B swizzle's period)");
  const uint32_t box_bytes = map->box[0] * map->box[1] * map->box[2] * static_cast<uint32_t>(map->elem_bytes);
  if (at + box_bytes > static_cast<uint32_t>(kMaxDynamicShared)) throw std::runtime_error("simt: a TMA box reaches past the dynamic shared memory");
  barrier_at(bar, "tma_load_3d");
  g_tma.push_back({at, smem_address(bar), *map, {c0, c1, c2}, nullptr, 0});
}

void bulk_load(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  const uint32_t at = smem_address(dst);
  if (at % 16 || reinterpret_cast<uintptr_t>(src) % 16 || bytes % 16 || bytes == 0)
    throw std::runtime_error("simt: bulk_load takes 16-byte aligned addresses and a positive multiple of 16 bytes, got " + std::to_string(bytes));
  if (at + bytes > static_cast<uint32_t>(kMaxDynamicShared)) throw std::runtime_error("simt: a bulk_load reaches past the dynamic shared memory");
  barrier_at(bar, "bulk_load");
  g_tma.push_back({at, smem_address(bar), TensorMap{}, {0, 0, 0}, src, bytes});
}

namespace {

// Lands the oldest TMA copy in flight: its box (zeros past the tensor's
// edges) or its bytes into shared memory as the async proxy writes them,
// then completes those bytes on its barrier. False when none is in flight.
bool land_oldest_tma() {
  if (g_tma.empty()) return false;
  const TmaCopy c = g_tma.front();
  g_tma.erase(g_tma.begin());
  const TensorMap& m = c.map;
  const int eb = m.elem_bytes;
  uint32_t logical = 0;
  if (c.src) {
    std::memcpy(g_dynamic_shared + c.dst, c.src, c.bytes);
    std::memcpy(g_async_view + c.dst, c.src, c.bytes);
    logical = c.bytes;
  }
  for (uint32_t i2 = 0; !c.src && i2 < m.box[2]; ++i2)
    for (uint32_t i1 = 0; i1 < m.box[1]; ++i1)
      for (uint32_t i0 = 0; i0 < m.box[0]; ++i0, logical += static_cast<uint32_t>(eb)) {
        const int64_t g0 = c.c[0] + i0, g1 = c.c[1] + i1, g2 = c.c[2] + i2;
        const bool inside = g0 >= 0 && g1 >= 0 && g2 >= 0 && static_cast<uint64_t>(g0) < m.dims[0] &&
                            static_cast<uint64_t>(g1) < m.dims[1] && static_cast<uint64_t>(g2) < m.dims[2];
        unsigned char* out = g_dynamic_shared + c.dst + swizzle_128b(logical);
        if (inside)
          std::memcpy(out, static_cast<const char*>(m.base) + g0 * eb + g1 * static_cast<int64_t>(m.strides[0]) + g2 * static_cast<int64_t>(m.strides[1]), static_cast<size_t>(eb));
        else
          std::memset(out, 0, static_cast<size_t>(eb));
        std::memcpy(g_async_view + (out - g_dynamic_shared), out, static_cast<size_t>(eb));
      }
  auto it = g_barriers.find(c.bar);
  if (it == g_barriers.end()) throw std::runtime_error("simt: a TMA copy completed on shared memory that is no longer an mbarrier");
  it->second.tx -= logical;
  if (it->second.tx < 0) throw std::runtime_error("simt: a TMA copy completed more bytes on its mbarrier than the phase expected (expect_tx)");
  settle(it->second);
  return true;
}

}  // namespace

namespace {
void check_nothing_in_flight() {
  if (!g_wgmma[runner().current].pending.empty())
    throw std::runtime_error("simt: the kernel returned with wgmma operations in flight (no wgmma_wait retired them)");
}
}  // namespace

}  // namespace simt
}  // namespace vl
