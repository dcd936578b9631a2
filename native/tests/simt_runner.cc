#include "tests/simt_runner.h"

#include <ucontext.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/half.h"
#include "cuda/simt.cuh"

namespace vl {
namespace simt {
namespace {

enum class Wait { None, Block, Warp, Done };

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

Runner& runner() {
  if (!g_runner) throw std::runtime_error("simt: a kernel function was called outside simt::launch");
  return *g_runner;
}

void fiber_main() {
  Runner& r = *g_runner;
  try {
    (*r.body)();
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
template <typename Publish, typename Read>
auto warp_collective(Publish publish, Read read) {
  Runner& r = runner();
  publish(r.slots[r.current]);
  yield(Wait::Warp);
  const int base = (r.current / 32) * 32;
  const int lanes = std::min(32, static_cast<int>(r.fibers.size()) - base);
  if (lanes != 32) throw std::runtime_error("simt: a warp collective in a partial warp (" + std::to_string(lanes) + " lanes) of " + where(r));
  auto result = read(&r.slots[base], r.current - base);
  yield(Wait::Warp);
  return result;
}

uint16_t load_b16(const void* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

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
};
std::vector<AsyncState> g_async;  // per thread of the running block

alignas(128) unsigned char g_dynamic_shared[kMaxDynamicShared];

// A new block: no copies in flight, shared memory full of NaNs.
void begin_block(int threads) {
  g_async.assign(static_cast<size_t>(threads), AsyncState());
  std::memset(g_dynamic_shared, 0xff, sizeof g_dynamic_shared);
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

void cp_async_wait_groups(int n) {
  AsyncState& st = g_async[runner().current];
  std::vector<AsyncCopy> later;
  for (const AsyncCopy& c : st.pending) {
    if (c.group >= st.committed - n) {  // still in flight (or not committed yet)
      later.push_back(c);
      continue;
    }
    std::memcpy(c.dst, c.src, static_cast<size_t>(c.src_bytes));
    std::memset(static_cast<char*>(c.dst) + c.src_bytes, 0, static_cast<size_t>(16 - c.src_bytes));
  }
  st.pending.swap(later);
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
        for (int t = 0; t < block.x; ++t) {
          if (r.fibers[t].wait != Wait::None) continue;
          r.current = t;
          swapcontext(&r.scheduler, &r.fibers[t].ctx);
          if (!r.error.empty()) throw std::runtime_error("simt: " + where(r) + ", thread " + std::to_string(t) + ": " + r.error);
        }
        int done = 0, at_block = 0;
        for (const auto& f : r.fibers) {
          done += f.wait == Wait::Done;
          at_block += f.wait == Wait::Block;
        }
        if (done == block.x) break;
        bool released = false;
        // A warp collective completes when all 32 lanes of the warp are at it.
        for (int w = 0; w * 32 < block.x; ++w) {
          const int lanes = std::min(32, block.x - w * 32);
          int at_warp = 0;
          for (int l = 0; l < lanes; ++l) at_warp += r.fibers[w * 32 + l].wait == Wait::Warp;
          if (at_warp == 0) continue;
          if (at_warp != lanes) {
            throw std::runtime_error("simt: " + where(r) + ", warp " + std::to_string(w) + ": " + std::to_string(at_warp) + " of " +
                                     std::to_string(lanes) + " lanes reached a warp collective, the others a barrier or the end (divergent warp)");
          }
          for (int l = 0; l < lanes; ++l) r.fibers[w * 32 + l].wait = Wait::None;
          released = true;
        }
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
        throw std::runtime_error("simt: " + where(r) + ": no thread can run (deadlock)");
      }
    }
  }
}

// ---- attention: transposed ldmatrix ----
void ldmatrix_x4_trans(uint32_t r[4], const void* row_address) { ldmatrix_x4_impl(r, row_address, true); }

}  // namespace simt
}  // namespace vl
