// Window partition/merge for locally-grouped attention (SPEC §3): tokens of a
// [B, H, W, C] map go to ws×ws windows, zero-padded at the bottom/right;
// merging crops the padding away.
#include <cstring>

#include "core/dispatch.h"
#include "core/thread_pool.h"

namespace vl {
namespace cpu {
namespace {

struct WindowGeometry {
  int64_t B, H, W, C, ws, nh, nw;
  explicit WindowGeometry(const Attrs& a)
      : B(a.integer("batch")), H(a.integer("height")), W(a.integer("width")), C(a.integer("channels")),
        ws(a.integer("window")), nh((H + ws - 1) / ws), nw((W + ws - 1) / ws) {}
};

// in: x [B, H*W, C] contiguous; out: [B*nh*nw, ws*ws, C]
void window_partition(const KernelCall& c) {
  const WindowGeometry g(c.attrs);
  const size_t esize = dtype_size(c.in[0].dtype);
  const char* src = static_cast<const char*>(c.in[0].data);
  char* dst = static_cast<char*>(c.out[0].data);
  const size_t row = static_cast<size_t>(g.C) * esize;
  // One task per window row: ws source rows of ws tokens each.
  parallel_for(g.B * g.nh * g.nw * g.ws, 64, [&](int64_t s, int64_t e) {
    for (int64_t t = s; t < e; ++t) {
      const int64_t wy = t % g.ws, win = t / g.ws;
      const int64_t bx = win % g.nw, by = (win / g.nw) % g.nh, b = win / (g.nw * g.nh);
      const int64_t y = by * g.ws + wy;
      char* out = dst + (win * g.ws * g.ws + wy * g.ws) * row;
      for (int64_t wx = 0; wx < g.ws; ++wx) {
        const int64_t x = bx * g.ws + wx;
        if (y < g.H && x < g.W)
          std::memcpy(out + wx * row, src + ((b * g.H + y) * g.W + x) * row, row);
        else
          std::memset(out + wx * row, 0, row);
      }
    }
  });
}

// in: [B*nh*nw, ws*ws, C] contiguous; out: [B, H*W, C]
void window_merge(const KernelCall& c) {
  const WindowGeometry g(c.attrs);
  const size_t esize = dtype_size(c.in[0].dtype);
  const char* src = static_cast<const char*>(c.in[0].data);
  char* dst = static_cast<char*>(c.out[0].data);
  const size_t row = static_cast<size_t>(g.C) * esize;
  parallel_for(g.B * g.H, 16, [&](int64_t s, int64_t e) {
    for (int64_t t = s; t < e; ++t) {
      const int64_t y = t % g.H, b = t / g.H;
      const int64_t by = y / g.ws, wy = y % g.ws;
      for (int64_t x = 0; x < g.W; ++x) {
        const int64_t win = (b * g.nh + by) * g.nw + x / g.ws;
        std::memcpy(dst + ((b * g.H + y) * g.W + x) * row, src + (win * g.ws * g.ws + wy * g.ws + x % g.ws) * row, row);
      }
    }
  });
}

}  // namespace

VL_REGISTER_KERNEL(window_partition, CPU, window_partition);
VL_REGISTER_KERNEL(window_merge, CPU, window_merge);

}  // namespace cpu
}  // namespace vl
