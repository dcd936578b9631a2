// RoPE tables for the fused attention kernels (see attention_rope.h).
#include "cpu/attention_rope.h"

#include <cmath>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/rope_args.h"
#include "core/thread_pool.h"

namespace vl {
namespace cpu {
namespace {

using Positions = RopePositionArgs;

// Python semantics: the class token at index -1 is in row -1, last column.
int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
int64_t py_mod(int64_t a, int64_t b) { return a - floor_div(a, b) * b; }

std::vector<float> frequencies(int64_t D) {
  std::vector<float> f(static_cast<size_t>(D / 4));
  for (int64_t i = 0; i < D / 4; ++i) f[i] = rope_frequency(i, D);
  return f;
}

// cos/sin of value·f_i for every frequency; the angle is rounded to fp32 first.
void axis_row(float value, const std::vector<float>& f, float* c, float* s) {
  for (size_t i = 0; i < f.size(); ++i) {
    const double angle = static_cast<float>(value * f[i]);
    c[i] = static_cast<float>(std::cos(angle));
    s[i] = static_cast<float>(std::sin(angle));
  }
}

// One token's row of the kernel's tables: pair 2i turns by x·f_i, pair 2i+1 by y·f_i.
void put_row(int64_t quarter, const float* cx, const float* sx, const float* cy, const float* sy, float* C, float* S) {
  for (int64_t i = 0; i < quarter; ++i) {
    C[4 * i] = C[4 * i + 1] = cx[i];
    C[4 * i + 2] = C[4 * i + 3] = cy[i];
    S[4 * i] = -sx[i];
    S[4 * i + 1] = sx[i];
    S[4 * i + 2] = -sy[i];
    S[4 * i + 3] = sy[i];
  }
}

// Tables [count][D] for `count` tokens. A grid only has `cols` distinct x and
// a few distinct y values, so their cos/sin are computed once per value.
void fill_tables(const Positions& p, int64_t count, int64_t D, float* C, float* S) {
  const std::vector<float> f = frequencies(D);
  const int64_t Q = D / 4;
  if (p.x || p.cols > count) {  // explicit, or a grid too wide to repeat a column: per token
    parallel_for(count, 64, [&](int64_t b, int64_t e) {
      std::vector<float> t(static_cast<size_t>(4 * Q));
      for (int64_t n = b; n < e; ++n) {
        const int64_t idx = n + p.offset;
        const float x = p.x ? p.x[n] : p.bias + static_cast<float>(py_mod(idx, p.cols)) * p.step;
        const float y = p.y ? p.y[n] : p.bias + static_cast<float>(floor_div(idx, p.cols)) * p.step;
        axis_row(x, f, t.data(), t.data() + Q);
        axis_row(y, f, t.data() + 2 * Q, t.data() + 3 * Q);
        put_row(Q, t.data(), t.data() + Q, t.data() + 2 * Q, t.data() + 3 * Q, C + n * D, S + n * D);
      }
    });
    return;
  }
  const int64_t r0 = floor_div(p.offset, p.cols), r1 = floor_div(count - 1 + p.offset, p.cols);
  std::vector<float> xc(static_cast<size_t>(p.cols * Q)), xs(xc.size());
  std::vector<float> yc(static_cast<size_t>((r1 - r0 + 1) * Q)), ys(yc.size());
  for (int64_t c = 0; c < p.cols; ++c)
    axis_row(p.bias + static_cast<float>(c) * p.step, f, xc.data() + c * Q, xs.data() + c * Q);
  for (int64_t r = r0; r <= r1; ++r)
    axis_row(p.bias + static_cast<float>(r) * p.step, f, yc.data() + (r - r0) * Q, ys.data() + (r - r0) * Q);
  parallel_for(count, 256, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) {
      const int64_t c = py_mod(n + p.offset, p.cols), r = floor_div(n + p.offset, p.cols) - r0;
      put_row(Q, xc.data() + c * Q, xs.data() + c * Q, yc.data() + r * Q, ys.data() + r * Q, C + n * D, S + n * D);
    }
  });
}

// The transposed rotation's sines: sin_t = −sin.
void negate(const float* s, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = -s[i];
}

}  // namespace

RopeTables rope_tables(const KernelCall& c, size_t first_position, int64_t N, int64_t M, int64_t D, bool transposed) {
  // Per token set: cos, sin, then sin_t when asked for.
  const int64_t per = transposed ? 3 : 2;
  size_t next = first_position;
  const Positions qp = read_rope_positions(c, "q_", &next);
  const bool shared = c.attrs.integer("k_same") != 0;
  const int64_t rows = N + (shared ? 0 : M);
  RopeTables t;
  t.storage = backend_for(c.device).allocate(c.device, static_cast<size_t>(per * rows * D) * sizeof(float));
  float* base = static_cast<float*>(t.storage->data());
  fill_tables(qp, N, D, base, base + N * D);
  if (transposed) negate(base + N * D, N * D, base + 2 * N * D);
  t.q_cos = base, t.q_sin = base + N * D, t.q_sin_t = transposed ? base + 2 * N * D : nullptr;
  if (shared) {
    t.k_cos = t.q_cos, t.k_sin = t.q_sin, t.k_sin_t = t.q_sin_t;
    return t;
  }
  float* kbase = base + per * N * D;
  fill_tables(read_rope_positions(c, "k_", &next), M, D, kbase, kbase + M * D);
  if (transposed) negate(kbase + M * D, M * D, kbase + 2 * M * D);
  t.k_cos = kbase, t.k_sin = kbase + M * D, t.k_sin_t = transposed ? kbase + 2 * M * D : nullptr;
  return t;
}

}  // namespace cpu
}  // namespace vl
