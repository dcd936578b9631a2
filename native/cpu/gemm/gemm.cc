#include "cpu/gemm/gemm.h"

#include <algorithm>
#include <cstdlib>
#include <new>

#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/simd/isa.h"

namespace vl {
namespace gemm {
namespace {

// Defaults for Zen 5 (48 KiB L1D, 1 MiB L2) and the 14x32 AVX-512 tile: one
// A micro-panel (14 x KC, 21 KiB) stays in L1 while the B micro-panels of a
// KC x NC block (384 KiB) stream from L2 past all MC rows of a task; the
// partial-sum scratch (MC x NC) fits beside it. KC is in f32 k steps; bf16
// blocks take twice as many (the same bytes). Measured: within a few % of
// each other for MC 112..448, NC 192..384, KC 256..512 at the model shapes.
Blocking g_blocking = {224, 256, 384};

// Packing buffers, kept per calling thread (a device stream) and reused:
// fresh pages would cost a page fault per 4 KiB on every call. Buffers
// above kKeepBytes are returned after the call.
constexpr size_t kKeepBytes = size_t{64} << 20;

class Workspace {
 public:
  ~Workspace() { std::free(p_); }
  char* get(size_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    if (bytes > cap_) {
      std::free(p_);
      p_ = nullptr;
      cap_ = 0;
      if (posix_memalign(&p_, 64, bytes) != 0) throw std::bad_alloc();
      cap_ = bytes;
    }
    return static_cast<char*>(p_);
  }
  void trim() {
    if (cap_ > kKeepBytes) {
      std::free(p_);
      p_ = nullptr;
      cap_ = 0;
    }
  }

 private:
  void* p_ = nullptr;
  size_t cap_ = 0;
};

struct Workspaces {
  Workspace b;
};
Workspaces& workspaces() {
  thread_local Workspaces w;
  return w;
}

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

const GemmVariant& variant_for(const GemmKernels& k, WType t) { return t == WType::BF16 ? k.bf16 : k.f32; }

// WType::F16: a packed f32 panel rounded in place to fp16 values (nearest
// even, Inf beyond 65504) by the ISA's conversions (F16C where there is one),
// while it is still in L1.
void round_panel(WType wtype, void* panel, int64_t n) {
  if (wtype != WType::F16) return;
  const IsaKernels& isa = isa_kernels();
  float* f = static_cast<float*>(panel);
  uint16_t h[256];
  for (int64_t i = 0; i < n; i += 256) {
    const int64_t len = std::min<int64_t>(256, n - i);
    isa.f32_to_f16(f + i, h, len);
    isa.f16_to_f32(h, f + i, len);
  }
}

// Columns of output per B panel: SwiGLU panels hold a gate half and an up half.
int out_cols(const GemmVariant& v, bool swiglu) { return swiglu ? v.nr / 2 : v.nr; }

// Work per parallel chunk of packing: about 64 KiB of elements.
int64_t pack_grain(int64_t elems_per_item) { return std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, elems_per_item)); }

}  // namespace

DimMap DimMap::linear(int64_t n, int64_t stride) {
  DimMap d;
  d.push(n, stride);
  return d;
}

void DimMap::push(int64_t n, int64_t s) {
  if (n == 1) return;
  VL_CHECK(nd < 8, ErrorCode::Runtime, "gemm: too many dims in an index map");
  size[nd] = n;
  stride[nd] = s;
  ++nd;
}

int64_t DimMap::offset(int64_t i) const {
  int64_t off = 0;
  for (int d = nd - 1; d >= 0; --d) {
    off += (i % size[d]) * stride[d];
    i /= size[d];
  }
  return off;
}

Blocking blocking() { return g_blocking; }
void set_blocking(const Blocking& b) {
  VL_CHECK(b.mc >= 1 && b.nc >= 1 && b.kc >= 2, ErrorCode::Argument, "gemm: bad blocking");
  g_blocking = b;
}

int64_t k_block(int64_t k, WType wtype) {
  const int kg = variant_for(gemm_kernels(), wtype).kgroup;
  const int64_t kp = round_up(std::max<int64_t>(k, 1), kg);
  const int b_elem = variant_for(gemm_kernels(), wtype).b_elem;
  const int64_t kc_max = std::max<int64_t>(kg, round_up(g_blocking.kc * 4 / b_elem, kg));
  return round_up(ceil_div(kp, ceil_div(kp, kc_max)), kg);
}

size_t packed_bytes(const PackedInfo& info) {
  const GemmVariant& v = variant_for(gemm_kernels(), info.wtype);
  const int64_t panels = ceil_div(info.n, out_cols(v, info.swiglu));
  return static_cast<size_t>(round_up(panels * round_up(std::max<int64_t>(info.k, 1), v.kgroup) * v.nr * v.b_elem, 64));
}

namespace {

// Geometry of one problem's packed operands. B is K-blocked: the panels of
// one K block are contiguous, so the block a task works on is one run of
// memory (no cache-set aliasing between panels whose full-K stride would be
// a large power of two). A is packed per task, one K block at a time.
struct Layout {
  int mr, nr, kg, ocols;
  int64_t kp, kcb, nkb;
  int64_t panels_m, panels_n;
  int a_elem, b_elem;
  // Offset of K block kb (starting at pc) of panel j among `panels`.
  int64_t b_off(int64_t panels, int64_t pc, int64_t kc, int64_t j) const { return (pc * panels + j * kc) * nr * b_elem; }
  int64_t b_bytes(int64_t panels) const { return panels * kp * nr * b_elem; }
};

Layout layout_for(const GemmVariant& v, int64_t m, int64_t n, int64_t k, WType wtype, bool swiglu) {
  Layout l;
  l.mr = v.mr;
  l.nr = v.nr;
  l.kg = v.kgroup;
  l.ocols = out_cols(v, swiglu);
  l.kp = round_up(std::max<int64_t>(k, 1), v.kgroup);
  l.kcb = k_block(k, wtype);
  l.nkb = ceil_div(l.kp, l.kcb);
  l.panels_m = ceil_div(m, v.mr);
  l.panels_n = ceil_div(n, l.ocols);
  l.a_elem = v.a_elem;
  l.b_elem = v.b_elem;
  return l;
}

// Packs every (panel, K block) of B; panel_cols(p, cols) gives the nr column
// pointers of panel p (nullptr: zero column), k stride ks.
template <typename Cols>
void pack_b_blocks(const GemmKernels& kern, const Layout& l, WType wtype, int64_t k, int64_t ks, int64_t panels,
                   char* dst, Cols&& panel_cols) {
  auto pack = wtype == WType::BF16 ? kern.pack_b_bf16 : kern.pack_b_f32;
  parallel_for(panels * l.nkb, pack_grain(l.kcb * l.nr), [&](int64_t q0, int64_t q1) {
    const float* cols[64];
    const float* shifted[64];
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t j = q / l.nkb, kb = q % l.nkb;
      const int64_t pc = kb * l.kcb, kc = std::min(l.kcb, l.kp - pc);
      panel_cols(j, cols);
      for (int c = 0; c < l.nr; ++c) shifted[c] = cols[c] ? cols[c] + pc * ks : nullptr;
      char* panel = dst + l.b_off(panels, pc, kc, j);
      pack(shifted, ks, std::max<int64_t>(0, std::min(kc, k - pc)), kc, panel);
      round_panel(wtype, panel, kc * l.nr);
    }
  });
}

}  // namespace

void pack_weight(const float* b, int64_t ns, int64_t ks, const PackedInfo& info, void* dst) {
  const GemmKernels& kern = gemm_kernels();
  const GemmVariant& v = variant_for(kern, info.wtype);
  const Layout l = layout_for(v, 1, info.n, info.k, info.wtype, false);
  pack_b_blocks(kern, l, info.wtype, info.k, ks, l.panels_n, static_cast<char*>(dst), [&](int64_t p, const float** cols) {
    for (int j = 0; j < l.nr; ++j) {
      const int64_t col = p * l.nr + j;
      cols[j] = col < info.n ? b + col * ns : nullptr;
    }
  });
}

void pack_swiglu(const float* w1, int64_t ns1, int64_t ks1, const float* w2, int64_t ns2, int64_t ks2,
                 const PackedInfo& info, void* dst) {
  VL_CHECK(ks1 == ks2, ErrorCode::Runtime, "pack_swiglu: W1 and W2 need the same k stride");
  const GemmKernels& kern = gemm_kernels();
  const GemmVariant& v = variant_for(kern, info.wtype);
  const Layout l = layout_for(v, 1, info.n, info.k, info.wtype, true);
  const int half = l.nr / 2;
  pack_b_blocks(kern, l, info.wtype, info.k, ks1, l.panels_n, static_cast<char*>(dst), [&](int64_t p, const float** cols) {
    for (int j = 0; j < half; ++j) {
      const int64_t h = p * half + j;
      cols[j] = h < info.n ? w1 + h * ns1 : nullptr;
      cols[half + j] = h < info.n ? w2 + h * ns2 : nullptr;
    }
  });
}

void run(const Problem& p) {
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  VL_CHECK(!p.a16 || (p.wtype == WType::BF16 && p.a_ks == 1 && !p.a_koff), ErrorCode::Runtime,
           "gemm: a bf16 A needs bf16 weights and unit k stride");
  VL_CHECK(!p.c16 || !p.r, ErrorCode::Runtime, "gemm: a bf16 C takes no residual");
  const GemmKernels& kern = gemm_kernels();
  const GemmVariant& v = variant_for(kern, p.wtype);
  const Layout l = layout_for(v, p.m, p.n, p.k, p.wtype, p.swiglu);
  const int mr = l.mr, nr = l.nr, kg = l.kg;
  const Blocking blk = g_blocking;

  Workspaces& ws = workspaces();
  struct Trim {
    Workspaces& w;
    ~Trim() { w.b.trim(); }
  } trim{ws};

  // B: the packed weight, or packed now (once when every batch shares it).
  const char* b_base = static_cast<const char*>(p.b_packed);
  const int64_t b_batch_bytes = p.b_boff && !p.b_packed ? l.b_bytes(l.panels_n) : 0;
  if (!b_base) {
    VL_CHECK(!p.swiglu, ErrorCode::Runtime, "gemm: SwiGLU needs packed weights");
    const int64_t nb = p.b_boff ? p.batch : 1;
    char* dst = ws.b.get(static_cast<size_t>(nb * l.b_bytes(l.panels_n)));
    for (int64_t bb = 0; bb < nb; ++bb) {
      const float* base = p.b + (p.b_boff ? p.b_boff[bb] : 0);
      pack_b_blocks(kern, l, p.wtype, p.k, p.b_ks, l.panels_n, dst + bb * l.b_bytes(l.panels_n),
                    [&](int64_t jp, const float** cols) {
                      for (int j = 0; j < nr; ++j) {
                        const int64_t col = jp * nr + j;
                        cols[j] = col < p.n ? base + col * p.b_ns : nullptr;
                      }
                    });
    }
    b_base = dst;
  }

  // Tasks: a block of about MC rows (A panels) of one batch times a group of
  // column tiles (all of them, unless the row blocks alone cannot keep the
  // threads busy). A task packs its own rows of A, so they stay in the cache
  // of the core that uses them and a GEMM is a single parallel region.
  // Inside, for each NC-wide column tile and each K block, every A
  // micro-panel (in L1) meets all of the block's B panels (streamed from L2).
  //
  // The task split decides only which thread computes which micro-tiles,
  // never how a C element is summed (the K blocks fix that), so it may
  // follow the thread count: row blocks are cut evenly, and smaller (down to
  // kMinPanels panels) until every CPU has a few to balance with.
  // CPUs available, not the pool size: num_threads() takes the pool's lock,
  // which a GEMM called from inside another kernel's parallel_for must not.
  static const int64_t threads = default_num_threads();
  const int64_t tiles_n = ceil_div(l.panels_n, std::max<int64_t>(1, blk.nc / nr));
  const int64_t ncp = ceil_div(l.panels_n, tiles_n);
  int64_t tiles_m = ceil_div(l.panels_m, std::max<int64_t>(1, blk.mc / mr));
  constexpr int64_t kMinPanels = 4;
  while (threads > 1 && p.batch * tiles_m < 4 * threads && l.panels_m / (tiles_m + 1) >= kMinPanels) ++tiles_m;
  // A whole number of row blocks per CPU where the rows allow it; blocks
  // differ by at most one panel (row block ti: panels [ti*P/T, (ti+1)*P/T)).
  if (threads > 1 && p.batch == 1 && tiles_m % threads != 0) {
    const int64_t up = round_up(tiles_m, threads);
    if (l.panels_m / up >= kMinPanels) tiles_m = up;
  }
  // Column groups (each repacks its rows of A, a few % of the work) when the
  // row blocks do not divide evenly among the CPUs or are too few: the
  // fewest that make the task count a multiple of the CPUs, else enough tasks.
  int64_t groups = 1;
  if (threads > 1 && (p.batch * tiles_m % threads != 0 || p.batch * tiles_m < 2 * threads)) {
    int64_t g = 1;
    while (g < l.panels_n && (p.batch * tiles_m * g % threads != 0 || p.batch * tiles_m * g < 2 * threads)) ++g;
    if (p.batch * tiles_m * g % threads == 0) {
      groups = g;
    } else {
      while (p.batch * tiles_m * groups < 2 * threads && groups < l.panels_n) ++groups;
    }
  }
  const int64_t tasks = p.batch * tiles_m * groups;
  // With several K blocks, partial sums wait in a per-task scratch block of
  // one column tile (it stays in L2 while the K blocks go by) rather than in
  // C: C's row stride is often a multiple of 4 KiB (N = 1024, 2048, ...),
  // which would put a micro-tile's rows in one L1 set. SwiGLU needs the
  // scratch anyway (C only has room for the gated result). The padding keeps
  // the scratch's own stride off such multiples.
  const bool scratch_needed = l.nkb > 1;
  const int64_t lds = ncp * nr + 16;
  // Column-major A (rows adjacent in memory, k strided, as dY^T in dW =
  // dY^T X): panels whose rows are one contiguous run per k step are packed
  // from those runs instead of element by element.
  const bool a_cols = !p.a_koff && p.a_ks != 1 && p.a_rows.nd >= 1 && p.a_rows.stride[p.a_rows.nd - 1] == 1;

  const IsaKernels& isa = isa_kernels();
  parallel_for(tasks, 1, [&](int64_t t0, int64_t t1) {
    thread_local Workspace a_ws, s_ws, w_ws, c_ws;
    const float* rows[64];
    // bf16 A: a panel's rows widened to f32 here before packing (from L1,
    // where the rounding in the pack then changes nothing); bf16 C: a row of
    // tiles stored here, then rounded into C one row run at a time.
    float* widened = p.a16 && !v.pack_a_b16 ? reinterpret_cast<float*>(w_ws.get(static_cast<size_t>(mr * l.kcb) * 4)) : nullptr;
    const int64_t ldt = ncp * l.ocols;
    float* c_tiles = p.c16 ? reinterpret_cast<float*>(c_ws.get(static_cast<size_t>(mr * ldt) * 4)) : nullptr;
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t bb = task / (tiles_m * groups);
      const int64_t ti = (task / groups) % tiles_m, g = task % groups;
      const int64_t ip0 = ti * l.panels_m / tiles_m, ip1 = (ti + 1) * l.panels_m / tiles_m, np = ip1 - ip0;
      // This group's column panels, cut evenly; walked in tiles of up to ncp panels.
      const int64_t jg0 = g * l.panels_n / groups, jg1 = (g + 1) * l.panels_n / groups;
      const int64_t a_off = p.a_boff ? p.a_boff[bb] : 0;
      const float* a_base = p.a ? p.a + a_off : nullptr;
      const uint16_t* a16_base = p.a16 ? p.a16 + a_off : nullptr;
      uint16_t* c16_base = p.c16 ? p.c16 + (p.c_boff ? p.c_boff[bb] : 0) : nullptr;
      const char* b_blk = b_base + bb * b_batch_bytes;
      const float* r_base = p.r ? p.r + (p.r_boff ? p.r_boff[bb] : 0) : nullptr;
      float* c_base = p.c ? p.c + (p.c_boff ? p.c_boff[bb] : 0) : nullptr;

      // The task's rows of A, all K blocks ([kb][panel][kc][mr]), packed once.
      // With one column tile each K block is used once: it is packed just
      // before its turn into a buffer of one block, which stays in L2 (the
      // whole of a long K, as in weight gradients, would not).
      const bool per_block = jg1 - jg0 <= ncp && l.nkb > 1;
      char* a_blk = a_ws.get(static_cast<size_t>(np * (per_block ? l.kcb : l.kp) * mr * l.a_elem));
      auto a_panel_at = [&](int64_t ip, int64_t pc, int64_t kc) {
        return a_blk + ((per_block ? 0 : pc * np) + (ip - ip0) * kc) * mr * l.a_elem;
      };
      auto pack_panel = [&](int64_t ip, int64_t pc) {
        const int64_t kc = std::min(l.kcb, l.kp - pc);
        char* dst = a_panel_at(ip, pc, kc);
        if (a16_base) {
          const uint16_t* rows16[64];
          for (int i = 0; i < mr; ++i) {
            const int64_t row = ip * mr + i;
            rows16[i] = row < p.m ? a16_base + p.a_rows.offset(row) : nullptr;
          }
          if (v.pack_a_b16) {
            v.pack_a_b16(rows16, pc, kc, p.k, dst);
            return;
          }
          const int64_t kin = std::min(kc, p.k - pc);
          for (int i = 0; i < mr; ++i) {
            rows[i] = rows16[i] ? widened + i * l.kcb : nullptr;
            if (rows16[i]) isa.bf16_to_f32(rows16[i] + pc, widened + i * l.kcb, kin);
          }
          v.pack_a(rows, 1, nullptr, 0, kc, kin, dst);
          return;
        }
        int n = 0;
        for (int i = 0; i < mr; ++i) {
          const int64_t row = ip * mr + i;
          rows[i] = row < p.m ? a_base + p.a_rows.offset(row) : nullptr;
          n += row < p.m;
        }
        bool adjacent = a_cols;
        for (int i = 1; i < n && adjacent; ++i) adjacent = rows[i] == rows[0] + i;
        if (adjacent)
          v.pack_a_cols(rows[0], n, p.a_ks, pc, kc, p.k, dst);
        else
          v.pack_a(rows, p.a_ks, p.a_koff, pc, kc, p.k, dst);
        round_panel(p.wtype, dst, kc * mr);
      };
      if (per_block) {
        // packed in the K loop below
      } else if (a_cols) {
        // One K block of all the task's panels at a time: neighbouring
        // panels share cache lines of each k step's run.
        for (int64_t pc = 0; pc < l.kp; pc += l.kcb)
          for (int64_t ip = ip0; ip < ip1; ++ip) pack_panel(ip, pc);
      } else {
        for (int64_t ip = ip0; ip < ip1; ++ip)
          for (int64_t pc = 0; pc < l.kp; pc += l.kcb) pack_panel(ip, pc);
      }
      float* scratch =
          scratch_needed ? reinterpret_cast<float*>(s_ws.get(static_cast<size_t>(np * mr * lds) * 4)) : nullptr;

      for (int64_t ja = jg0; ja < jg1; ja += ncp) {
        const int64_t jb = std::min(jg1, ja + ncp);
        for (int64_t kb = 0; kb < l.nkb; ++kb) {
          const int64_t pc = kb * l.kcb;
          const int64_t kc = std::min(l.kcb, l.kp - pc);
          const bool first = kb == 0, last = kb == l.nkb - 1;
          if (per_block)
            for (int64_t ip = ip0; ip < ip1; ++ip) pack_panel(ip, pc);
          for (int64_t ip = ip0; ip < ip1; ++ip) {
            const char* a_panel = a_panel_at(ip, pc, kc);
            for (int64_t jp = ja; jp < jb; ++jp) {
              GemmTile t;
              t.kc = kc / kg;
              t.a = a_panel;
              t.b = b_blk + l.b_off(l.panels_n, pc, kc, jp);
              const int64_t row0 = ip * mr, col0 = jp * l.ocols;
              t.m = static_cast<int>(std::min<int64_t>(mr, p.m - row0));
              t.nout = static_cast<int>(std::min<int64_t>(l.ocols, p.n - col0));
              float* c_out = c_tiles ? c_tiles + (jp - ja) * l.ocols : c_base + row0 * p.ldc + col0;
              const int64_t ldc = c_tiles ? ldt : p.ldc;
              float* s = scratch ? scratch + (ip - ip0) * mr * lds + (jp - ja) * nr : nullptr;
              t.acc = first ? nullptr : s;
              t.ldacc = lds;
              t.n = s ? nr : t.nout;  // the scratch holds whole panels
              t.c = last ? c_out : s;
              t.ldc = last ? ldc : lds;
              t.final_store = last ? 1 : 0;
              t.bias = p.bias && !p.swiglu ? p.bias + col0 : nullptr;
              t.res = r_base ? r_base + row0 * p.ldr + col0 : nullptr;
              t.ldres = p.ldr;
              t.act = p.swiglu ? kGemmActSwiglu : kGemmActNone;
              // The next call writes the neighbouring tile, or the first of the
              // next row of tiles: prefetched a whole call ahead. (Prefetches
              // never fault, so rows past the end do no harm.)
              t.next = nullptr;
              t.ldnext = t.ldc;
              if (jp + 1 < jb)
                t.next = t.c + (last ? l.ocols : nr);
              else if (ip + 1 < ip1 && (!last || c_base))
                t.next = last ? c_base + (row0 + mr) * p.ldc + ja * l.ocols : scratch + (ip + 1 - ip0) * mr * lds;
              v.kernel(&t);
            }
            if (c_tiles && last) {
              const int64_t row0 = ip * mr, col0 = ja * l.ocols, cols = std::min(p.n, jb * l.ocols) - col0;
              for (int64_t i = 0; i < std::min<int64_t>(mr, p.m - row0); ++i)
                isa.f32_to_bf16(c_tiles + i * ldt, c16_base + (row0 + i) * p.ldc + col0, cols);
            }
          }
        }
      }
      a_ws.trim();
      s_ws.trim();
    }
    w_ws.trim();
    c_ws.trim();
  });
}

}  // namespace gemm
}  // namespace vl
