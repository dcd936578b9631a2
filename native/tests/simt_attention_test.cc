// The fused AS2DRoPE flash-attention kernels of cuda/kernels/attention.cuh on
// the CPU, through the SIMT runner, against double-precision references with
// RoPE: forward (out, lse) and backward (dq, dk, dv) on small ragged shapes,
// strided q/k/v views, class-token grids, explicit positions, cross
// attention, RoPE off, custom scales, every padded head width, the bf16 and
// the 3×bf16 products, and the three gradient layouts. First the runner
// wrapper the kernels add (ldmatrix_x4_trans; dynamic_shared and pack_bf16x2
// are checked with the GEMM in simt_gemm_test.cc).
// Built and run by test/simt.test.ts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "core/half.h"
#include "cuda/kernels/attention.cuh"
#include "cuda/kernels/attention_wgmma.cuh"
#include "tests/simt_check.h"
#include "tests/simt_runner.h"

using vl::simt::Dim;
using vl::simt::launch;
using vl::simt_test::check;
namespace k = vl::cuda::kernels;

namespace {

// ---- runner wrapper ----

VL_GLOBAL void ldmatrix_trans_probe(uint32_t* out) {
  VL_SHARED_ALIGNED(16) uint16_t tile[16][24];  // padded rows, as the attention tiles
  const int t = vl::simt::thread_x();
  for (int i = t; i < 256; i += 32) tile[i / 16][i % 16] = static_cast<uint16_t>(i);
  vl::simt::sync_threads();
  uint32_t r[4];
  vl::simt::ldmatrix_x4_trans(r, &tile[(t & 7) + ((t >> 3) & 1) * 8][(t >> 4) * 8]);
  for (int i = 0; i < 4; ++i) out[t * 4 + i] = r[i];
}

void test_ldmatrix_trans() {
  std::vector<uint32_t> out(32 * 4);
  launch({1, 1}, {32, 1}, [&] { ldmatrix_trans_probe(out.data()); });
  bool ok = true;
  for (int l = 0; l < 32; ++l)
    for (int m = 0; m < 4; ++m) {
      // Matrix m covers rows 8(m%2).., columns 8(m/2)..; the lane gets rows 2(l%4), +1 of column l/4.
      const int row = (m & 1) * 8 + 2 * (l % 4), col = (m >> 1) * 8 + l / 4;
      const uint32_t want = static_cast<uint32_t>(row * 16 + col) | static_cast<uint32_t>((row + 1) * 16 + col) << 16;
      ok &= out[l * 4 + m] == want;
    }
  check(ok, "ldmatrix_x4_trans: register m of lane l holds rows 2(l%4), 2(l%4)+1 of column l/4 of matrix m");
}

// ---- references ----

// Positions as ops::RopePositions: explicit x, y or the grid rule.
struct Pos {
  std::vector<float> x, y;
  int64_t cols = 1, offset = 0;
  float step = 1.0f, bias = 0.0f;
};

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

// cos/sin of pair j of token n in double, the angle rounded to fp32 first (SPEC §1).
void angle(const Pos& p, const k::AttnFreqs& f, int64_t n, int pair, double& c, double& s) {
  float x, y;
  if (!p.x.empty()) {
    x = p.x[n], y = p.y[n];
  } else {
    const int64_t idx = n + p.offset, row = floor_div(idx, p.cols);
    x = p.bias + static_cast<float>(idx - row * p.cols) * p.step;
    y = p.bias + static_cast<float>(row) * p.step;
  }
  const float a = (pair % 2 == 0 ? x : y) * f.f[pair / 2];
  c = std::cos(static_cast<double>(a));
  s = std::sin(static_cast<double>(a));
}

// A [B, T, H, D] view into a larger buffer (a slice of a packed projection,
// or rows with padding), filled with random values.
struct View {
  std::vector<float> buf;
  int64_t sb, st, sh, offset;
  int B, T, H, D;
  float& at(int b, int t, int h, int d) { return buf[offset + b * sb + t * st + h * sh + d]; }
  float at(int b, int t, int h, int d) const { return buf[offset + b * sb + t * st + h * sh + d]; }
  k::AttnTensor arg() const { return {buf.data() + offset, sb, st, sh}; }
  // Every row 16-byte aligned, as attention.cu asks for cp.async.
  bool aligned() const {
    return reinterpret_cast<uintptr_t>(buf.data() + offset) % 16 == 0 && sb % 4 == 0 && st % 4 == 0 && sh % 4 == 0;
  }
};

// part `part` of `parts` in a packed [B, T, parts·H·D] tensor (parts = 1 with
// pad > 0: plain rows with `pad` extra floats per token).
View make_view(int B, int T, int H, int D, int parts, int part, int pad, std::mt19937& rng) {
  View v;
  v.B = B, v.T = T, v.H = H, v.D = D;
  const int64_t row = static_cast<int64_t>(parts) * H * D + pad;
  v.buf.resize(static_cast<size_t>(B * T * row));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& x : v.buf) x = dist(rng);
  v.sb = T * row, v.st = row, v.sh = D, v.offset = static_cast<int64_t>(part) * H * D;
  return v;
}

// The rotated rows of a view in double: out[b][h][t][d].
std::vector<double> rotated(const View& v, const Pos* p, const k::AttnFreqs& f) {
  std::vector<double> r(static_cast<size_t>(v.B) * v.H * v.T * v.D);
  for (int b = 0; b < v.B; ++b)
    for (int h = 0; h < v.H; ++h)
      for (int t = 0; t < v.T; ++t) {
        double* o = &r[((static_cast<size_t>(b) * v.H + h) * v.T + t) * v.D];
        for (int d = 0; d < v.D; d += 2) {
          const double a = v.at(b, t, h, d), bb = v.at(b, t, h, d + 1);
          double c = 1, s = 0;
          if (p) angle(*p, f, t, d / 2, c, s);
          o[d] = a * c - bb * s;
          o[d + 1] = a * s + bb * c;
        }
      }
  return r;
}

struct Case {
  std::string name;
  int B, H, N, M, D;
  bool rope = true;
  Pos qp, kp;
  bool k_same = true;  // keys at the queries' positions
  double scale = 0;  // 0: 1/sqrt(D)
  int qkv = 0;  // 0 separate rows (padded), 1 packed qkv, 2 q separate + packed kv
  bool unaligned = false;  // query rows 1 float apart from 16-byte alignment: plain loads, no cp.async
};

struct Inputs {
  View q, k, v;
};

Inputs make_inputs(const Case& c, std::mt19937& rng) {
  if (c.qkv == 1) {
    Inputs in{make_view(c.B, c.N, c.H, c.D, 3, 0, 0, rng), {}, {}};
    in.k = in.q, in.v = in.q;
    in.k.offset = static_cast<int64_t>(c.H) * c.D, in.v.offset = 2 * in.k.offset;
    return in;
  }
  Inputs in{make_view(c.B, c.N, c.H, c.D, 1, 0, c.unaligned ? 1 : 4, rng), {}, {}};
  if (c.qkv == 2) {
    in.k = make_view(c.B, c.M, c.H, c.D, 2, 0, 0, rng);
    in.v = in.k;
    in.v.offset = static_cast<int64_t>(c.H) * c.D;
  } else {
    in.k = make_view(c.B, c.M, c.H, c.D, 1, 0, 8, rng);
    in.v = make_view(c.B, c.M, c.H, c.D, 1, 0, 0, rng);
  }
  return in;
}

double scale_of(const Case& c) { return c.scale != 0 ? c.scale : 1.0 / std::sqrt(static_cast<double>(c.D)); }

// Forward and backward in double for one (b, h): rq [N][D], rk, v [M][D].
struct Ref {
  std::vector<double> out, lse;  // [B][N][H][D], [B][H][N]
  std::vector<double> dq, dk, dv;  // [B][T][H][D], the gradients of the unrotated inputs
};

Ref reference(const Case& c, const Inputs& in, const std::vector<float>* dout) {
  const k::AttnFreqs f = k::attn_freqs(c.D);
  const std::vector<double> rq = rotated(in.q, c.rope ? &c.qp : nullptr, f);
  const std::vector<double> rk = rotated(in.k, c.rope ? (c.k_same ? &c.qp : &c.kp) : nullptr, f);
  const int N = c.N, M = c.M, D = c.D, H = c.H;
  const double scale = scale_of(c);
  Ref r;
  r.out.assign(static_cast<size_t>(c.B) * N * H * D, 0.0);
  r.lse.assign(static_cast<size_t>(c.B) * H * N, 0.0);
  r.dq.assign(r.out.size(), 0.0);
  r.dk.assign(static_cast<size_t>(c.B) * M * H * D, 0.0);
  r.dv.assign(r.dk.size(), 0.0);
  std::vector<double> P(static_cast<size_t>(M)), dS(static_cast<size_t>(M)), dqr(D);
  std::vector<double> dkr(static_cast<size_t>(M) * D);
  for (int b = 0; b < c.B; ++b)
    for (int h = 0; h < H; ++h) {
      const double* Q = &rq[(static_cast<size_t>(b) * H + h) * N * D];
      const double* K = &rk[(static_cast<size_t>(b) * H + h) * M * D];
      std::fill(dkr.begin(), dkr.end(), 0.0);
      for (int n = 0; n < N; ++n) {
        double mx = -INFINITY;
        for (int m = 0; m < M; ++m) {
          double s = 0;
          for (int d = 0; d < D; ++d) s += Q[n * D + d] * K[m * D + d];
          P[m] = s * scale;
          mx = std::max(mx, P[m]);
        }
        double sum = 0;
        for (int m = 0; m < M; ++m) sum += P[m] = std::exp(P[m] - mx);
        for (int m = 0; m < M; ++m) P[m] /= sum;
        r.lse[(static_cast<size_t>(b) * H + h) * N + n] = mx + std::log(sum);
        double* o = &r.out[((static_cast<size_t>(b) * N + n) * H + h) * D];
        for (int m = 0; m < M; ++m)
          for (int d = 0; d < D; ++d) o[d] += P[m] * in.v.at(b, m, h, d);
        if (!dout) continue;
        const float* g = &(*dout)[((static_cast<size_t>(b) * N + n) * H + h) * D];
        double delta = 0;
        for (int d = 0; d < D; ++d) delta += g[d] * o[d];
        std::fill(dqr.begin(), dqr.end(), 0.0);
        for (int m = 0; m < M; ++m) {
          double dp = 0;
          for (int d = 0; d < D; ++d) dp += g[d] * in.v.at(b, m, h, d);
          const double ds = P[m] * (dp - delta) * scale;
          for (int d = 0; d < D; ++d) {
            dqr[d] += ds * K[m * D + d];
            dkr[m * D + d] += ds * Q[n * D + d];
            r.dv[((static_cast<size_t>(b) * M + m) * H + h) * D + d] += P[m] * g[d];
          }
        }
        // Back through the rotation: the transpose turns by -angle.
        for (int d = 0; d < D; d += 2) {
          double cs = 1, sn = 0;
          if (c.rope) angle(c.qp, f, n, d / 2, cs, sn);
          double* dq = &r.dq[((static_cast<size_t>(b) * N + n) * H + h) * D];
          dq[d] = dqr[d] * cs + dqr[d + 1] * sn;
          dq[d + 1] = -dqr[d] * sn + dqr[d + 1] * cs;
        }
      }
      for (int m = 0; m < M && dout; ++m)
        for (int d = 0; d < D; d += 2) {
          double cs = 1, sn = 0;
          if (c.rope) angle(c.k_same ? c.qp : c.kp, f, m, d / 2, cs, sn);
          double* dk = &r.dk[((static_cast<size_t>(b) * M + m) * H + h) * D];
          dk[d] = dkr[m * D + d] * cs + dkr[m * D + d + 1] * sn;
          dk[d + 1] = -dkr[m * D + d] * sn + dkr[m * D + d + 1] * cs;
        }
    }
  return r;
}

// ---- launching the kernels as attention.cu does ----

k::AttnPositions positions(const Pos& p) {
  return {p.x.empty() ? nullptr : p.x.data(), p.y.empty() ? nullptr : p.y.data(), p.cols, p.offset, p.step, p.bias};
}

std::vector<float> table(const Pos& p, int count, int D) {
  std::vector<float> t(static_cast<size_t>(count) * D);
  const int quarter = D / 4, total = count * quarter;
  launch({(total + 127) / 128, 1}, {128, 1}, [&] { k::rope_table(positions(p), k::attn_freqs(D), count, quarter, t.data()); });
  return t;
}

struct Tables {
  std::vector<float> q, k;
  const float* qp() const { return q.empty() ? nullptr : q.data(); }
  const float* kp() const { return k.empty() ? nullptr : k.data(); }
};

std::string shape(const Case& c) {
  return c.name + " (B " + std::to_string(c.B) + ", heads " + std::to_string(c.H) + ", N " + std::to_string(c.N) +
         ", M " + std::to_string(c.M) + ", D " + std::to_string(c.D) + ")";
}

Tables tables(const Case& c) {
  Tables t;
  if (!c.rope) return t;
  if (c.k_same && c.M > c.N) throw std::runtime_error(shape(c) + ": keys share the query positions, so M may not exceed N");
  t.q = table(c.qp, c.N, c.D);
  t.k = c.k_same ? t.q : table(c.kp, c.M, c.D);
  return t;
}

// The kernels for D's padded width, as attention.cu picks them.
template <typename F>
void with_padded_d(int D, F f) {
  if (!k::attn_with_padded_d(D, f)) throw std::runtime_error("no attention kernel for D = " + std::to_string(D));
}

double max_err(const std::vector<float>& got, const std::vector<double>& want) {
  double w = 0;
  for (size_t i = 0; i < got.size(); ++i) w = vl::simt_test::worse(w, std::fabs(got[i] - want[i]));
  return w;
}


std::string err_str(double e) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2e", e);
  return buf;
}

// What a kernel's arithmetic is called in the check lines.
template <typename P>
std::string arith_name() {
  if (P::kParts == 2) return "3xbf16";
  return std::is_same<typename P::Ops, vl::simt::F16Ops>::value ? "f16" : "bf16";
}

// wgmma: the Hopper kernel (attention_wgmma.cuh; aligned rows, its head widths).
template <typename P>
void test_forward(const Case& c, double tol, std::mt19937& rng, bool wgmma = false) {
  const Inputs in = make_inputs(c, rng);
  const Ref ref = reference(c, in, nullptr);
  const Tables tb = tables(c);
  std::vector<float> out(ref.out.size(), NAN), lse(ref.lse.size(), NAN);
  k::AttnFwdArgs a{};
  a.q = in.q.arg(), a.k = in.k.arg(), a.v = in.v.arg();
  a.out = out.data(), a.lse = lse.data();
  a.H = c.H, a.N = c.N, a.M = c.M, a.D = c.D;
  const int tile_rows = wgmma ? k::kAttnWgRows : k::kAttnRows;
  a.q_tiles = (c.N + tile_rows - 1) / tile_rows;
  a.scale_log2 = static_cast<float>(scale_of(c)) * k::kLog2e;
  a.q_rope = tb.qp(), a.k_rope = tb.kp();
  a.vec = in.q.aligned() && in.k.aligned() && in.v.aligned();
  const auto run_wgmma = [&](auto kd) {
    constexpr int kDp = decltype(kd)::value;
    if constexpr (k::kAttnWgmmaWidth<kDp>) {
      static_assert(k::kAttnWgSmemBytes<kDp, P> <= vl::simt::kMaxDynamicShared, "fits");
      if (!a.vec) throw std::runtime_error("the wgmma attention needs 16-byte aligned rows");
      // As attention_sm90.cu: the packed keys and values (NaN-filled, so a chunk never written shows), then the tiles.
      std::vector<uint16_t> kv(static_cast<size_t>(k::attn_wg_packed_elems<kDp, P>(c.B * c.H, c.M)), 0xffff);
      const int64_t chunks = static_cast<int64_t>(kv.size() / 8 / P::kParts);
      launch({static_cast<int>((chunks + 255) / 256), 1}, {256, 1}, [&] { k::attention_pack_kv<kDp, P>(a, chunks, kv.data()); });
      launch({a.q_tiles * c.B * c.H, 1}, {k::kAttnWgThreads, 1}, [&] { k::attention_fwd_wgmma<kDp, P>(a, kv.data()); });
    } else {
      throw std::runtime_error("no wgmma attention for D = " + std::to_string(c.D));
    }
  };
  const auto run = [&](auto kd, auto async) {
    constexpr int kDp = decltype(kd)::value;
    constexpr bool kAsync = decltype(async)::value;
    static_assert(k::kAttnFwdSmemBytes<kDp, P, kAsync> <= vl::simt::kMaxDynamicShared, "fits");
    launch({a.q_tiles * c.B * c.H, 1}, {k::kAttnThreads, 1}, [&] { k::attention_fwd<kDp, P, kAsync>(a); });
  };
  with_padded_d(c.D, [&](auto kd) {
    if (wgmma)
      run_wgmma(kd);
    else if (a.vec)
      run(kd, std::true_type{});
    else
      run(kd, std::false_type{});
  });
  const double eo = max_err(out, ref.out), el = max_err(lse, ref.lse);
  const std::string what = arith_name<P>() + " forward (" +
                           (wgmma ? "wgmma" : a.vec ? "cp.async" : "plain loads") + ") " + shape(c);
  check(eo < tol, what + ": out matches the reference (max error " + err_str(eo) + ")");
  check(el < tol, what + ": lse matches the reference (max error " + err_str(el) + ")");
}

enum class Layout { Separate, PackedQKV, PackedKV };

// async: the kernels that stream their tiles through cp.async (aligned rows only).
// wgmma: kWgDq, kWgDkdv: dq, dk and dv from the Hopper kernels (attention_bwd_dq_wgmma,
// attention_bwd_dkdv_wgmma) as attention_sm90.cu runs them.
constexpr int kWgDq = 1, kWgDkdv = 2;
template <typename P>
void test_backward(const Case& c, Layout layout, double tol, std::mt19937& rng, bool async = true, int wgmma = 0) {
  const bool wgmma_dq = wgmma & kWgDq, wgmma_dkdv = wgmma & kWgDkdv;
  const Inputs in = make_inputs(c, rng);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> dout(static_cast<size_t>(c.B) * c.N * c.H * c.D);
  for (auto& x : dout) x = dist(rng);
  const Ref ref = reference(c, in, &dout);
  const Tables tb = tables(c);
  // The forward's outputs as the backward gets them (f32).
  std::vector<float> out(ref.out.begin(), ref.out.end()), lse(ref.lse.begin(), ref.lse.end());
  const int64_t C = static_cast<int64_t>(c.H) * c.D;
  const View out_view{out, c.N * C, C, c.D, 0, c.B, c.N, c.H, c.D};
  const View dout_view{dout, c.N * C, C, c.D, 0, c.B, c.N, c.H, c.D};

  // Gradients as ops/attention.cc lays them out: NAN-filled so unwritten entries show.
  std::vector<float> packed, gq, gk, gv;
  k::AttnOutTensor dq{}, dk{}, dv{};
  auto plain = [&](std::vector<float>& buf, int T) {
    buf.assign(static_cast<size_t>(c.B) * T * C, NAN);
    return k::AttnOutTensor{buf.data(), T * C, C, c.D};
  };
  if (layout == Layout::PackedQKV) {
    packed.assign(static_cast<size_t>(c.B) * c.N * 3 * C, NAN);
    dq = {packed.data(), c.N * 3 * C, 3 * C, c.D};
    dk = {packed.data() + C, c.N * 3 * C, 3 * C, c.D};
    dv = {packed.data() + 2 * C, c.N * 3 * C, 3 * C, c.D};
  } else {
    dq = plain(gq, c.N);
    if (layout == Layout::PackedKV) {
      packed.assign(static_cast<size_t>(c.B) * c.M * 2 * C, NAN);
      dk = {packed.data(), c.M * 2 * C, 2 * C, c.D};
      dv = {packed.data() + C, c.M * 2 * C, 2 * C, c.D};
    } else {
      dk = plain(gk, c.M);
      dv = plain(gv, c.M);
    }
  }

  std::vector<float> delta(static_cast<size_t>(c.B) * c.H * c.N, NAN);
  const int64_t rows = static_cast<int64_t>(c.B) * c.H * c.N;
  launch({static_cast<int>((rows + k::kAttnWarps - 1) / k::kAttnWarps), 1}, {k::kAttnThreads, 1}, [&] {
    k::attention_bwd_delta(dout_view.arg(), out_view.arg(), c.H, c.N, c.D, rows, delta.data());
  });
  k::AttnBwdArgs a{};
  a.q = in.q.arg(), a.k = in.k.arg(), a.v = in.v.arg(), a.dout = dout_view.arg();
  a.lse = lse.data(), a.delta = delta.data();
  a.dq = dq, a.dk = dk, a.dv = dv;
  a.H = c.H, a.N = c.N, a.M = c.M, a.D = c.D;
  a.scale = static_cast<float>(scale_of(c)), a.scale_log2 = a.scale * k::kLog2e;
  a.q_rope = tb.qp(), a.k_rope = tb.kp();
  a.vec = in.q.aligned() && in.k.aligned() && in.v.aligned();
  async = async && a.vec;
  const auto run = [&](auto kd, auto async) {
    constexpr int kDp = decltype(kd)::value;
    constexpr bool kAsync = decltype(async)::value;
    static_assert(k::kAttnBwdSmemBytes<kDp, P, kAsync> <= vl::simt::kMaxDynamicShared, "fits the runner's shared memory");
    if (!wgmma_dkdv) {
      a.tiles = (c.M + k::kAttnRows - 1) / k::kAttnRows;
      launch({a.tiles * c.B * c.H, 1}, {k::kAttnThreads, 1}, [&] { k::attention_bwd_dkdv<kDp, P, kAsync>(a); });
    } else if constexpr (k::kAttnWgDkdvWidth<kDp, P>) {
      static_assert(k::kAttnWgSmemBytes<kDp, P, k::kAttnPackDkdv> <= vl::simt::kMaxDynamicShared, "fits");
      if (!a.vec) throw std::runtime_error("the wgmma dk/dv kernel needs 16-byte aligned rows");
      // The packed queries and dOut with their stats (NaN-filled, so a chunk never written shows), then the key tiles.
      k::AttnFwdArgs qd_args{};
      qd_args.k = a.q, qd_args.v = a.dout, qd_args.H = a.H, qd_args.M = a.N, qd_args.D = a.D;
      qd_args.k_rope = a.q_rope, qd_args.vec = a.vec;
      using L = k::AttnPack<kDp, P, k::kAttnPackDkdv>;
      std::vector<uint16_t> qd(static_cast<size_t>(k::attn_wg_packed_elems<kDp, P, k::kAttnPackDkdv>(c.B * c.H, c.N)), 0xffff);
      const int64_t blocks = static_cast<int64_t>(c.B) * c.H * ((c.N + L::kBN - 1) / L::kBN);
      const int64_t chunks = blocks * L::kTensors * L::kPartElems / 8, rows_total = blocks * L::kBN;
      launch({static_cast<int>((chunks + 255) / 256), 1}, {256, 1}, [&] { k::attention_pack_kv<kDp, P, k::kAttnPackDkdv>(qd_args, chunks, qd.data()); });
      launch({static_cast<int>((rows_total + 255) / 256), 1}, {256, 1}, [&] { k::attention_pack_stats<kDp, P>(a, rows_total, qd.data()); });
      a.tiles = (c.M + k::kAttnWgRows - 1) / k::kAttnWgRows;
      launch({a.tiles * c.B * c.H, 1}, {k::kAttnWgThreads, 1}, [&] { k::attention_bwd_dkdv_wgmma<kDp, P>(a, qd.data()); });
    } else {
      throw std::runtime_error("no wgmma dk/dv kernel for D = " + std::to_string(c.D));
    }
    if (!wgmma_dq) {
      a.tiles = (c.N + k::kAttnRows - 1) / k::kAttnRows;
      launch({a.tiles * c.B * c.H, 1}, {k::kAttnThreads, 1}, [&] { k::attention_bwd_dq<kDp, P, kAsync>(a); });
    } else if constexpr (k::kAttnWgDqWidth<kDp, P>) {
      static_assert(k::kAttnWgSmemBytes<kDp, P, k::kAttnPackDq> <= vl::simt::kMaxDynamicShared, "fits");
      if (!a.vec) throw std::runtime_error("the wgmma dq kernel needs 16-byte aligned rows");
      // The packed keys and values (NaN-filled, so a chunk never written shows), then the query tiles.
      k::AttnFwdArgs kv_args{};
      kv_args.k = a.k, kv_args.v = a.v, kv_args.H = a.H, kv_args.M = a.M, kv_args.D = a.D;
      kv_args.k_rope = a.k_rope, kv_args.vec = a.vec;
      std::vector<uint16_t> kv(static_cast<size_t>(k::attn_wg_packed_elems<kDp, P, k::kAttnPackDq>(c.B * c.H, c.M)), 0xffff);
      const int64_t chunks = static_cast<int64_t>(kv.size() / 8 / P::kParts);
      launch({static_cast<int>((chunks + 255) / 256), 1}, {256, 1}, [&] { k::attention_pack_kv<kDp, P, k::kAttnPackDq>(kv_args, chunks, kv.data()); });
      a.tiles = (c.N + k::kAttnWgRows - 1) / k::kAttnWgRows;
      launch({a.tiles * c.B * c.H, 1}, {k::kAttnWgThreads, 1}, [&] { k::attention_bwd_dq_wgmma<kDp, P>(a, kv.data()); });
    } else {
      throw std::runtime_error("no wgmma dq kernel for D = " + std::to_string(c.D));
    }
  };
  with_padded_d(c.D, [&](auto kd) {
    if (async)
      run(kd, std::true_type{});
    else
      run(kd, std::false_type{});
  });

  // Every element of the packed tensor must be written; gather each gradient as [B][T][H][D].
  auto gather = [&](const k::AttnOutTensor& t, int T) {
    std::vector<float> g(static_cast<size_t>(c.B) * T * C);
    for (int b = 0; b < c.B; ++b)
      for (int i = 0; i < T; ++i)
        for (int h = 0; h < c.H; ++h)
          for (int d = 0; d < c.D; ++d) g[((static_cast<size_t>(b) * T + i) * c.H + h) * c.D + d] = t.data[b * t.sb + i * t.st + h * t.sh + d];
    return g;
  };
  const char* names[] = {"separate", "packed qkv", "packed kv"};
  const std::string what = arith_name<P>() + " backward (" + (async ? "cp.async" : "plain loads") + (wgmma_dq ? ", dq on wgmma" : "") + (wgmma_dkdv ? ", dk/dv on wgmma" : "") + "), " +
                           names[static_cast<int>(layout)] + " gradients, " + shape(c);
  const double eq = max_err(gather(dq, c.N), ref.dq), ek = max_err(gather(dk, c.M), ref.dk),
               ev = max_err(gather(dv, c.M), ref.dv);
  const bool filled = std::none_of(packed.begin(), packed.end(), [](float x) { return std::isnan(x); });
  check(eq < tol, what + ": dq matches the reference (max error " + err_str(eq) + ")");
  check(ek < tol, what + ": dk matches the reference (max error " + err_str(ek) + ")");
  check(ev < tol, what + ": dv matches the reference (max error " + err_str(ev) + ")");
  if (layout != Layout::Separate) check(filled, what + ": every element of the packed tensor is written");
}

// The analytic reference gradient against central differences of
// L = Σ dout ⊙ out, in double, for a few entries of q, k and v.
void test_reference_gradient(std::mt19937& rng) {
  Case c{"finite differences", 1, 2, 5, 6, 16};
  c.qp.cols = 3, c.qp.offset = -1, c.kp.cols = 2, c.kp.step = 1.5f, c.kp.bias = 0.25f, c.k_same = false;
  Inputs in = make_inputs(c, rng);
  std::vector<float> dout(static_cast<size_t>(c.N) * c.H * c.D);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (auto& x : dout) x = dist(rng);
  const Ref ref = reference(c, in, &dout);
  auto loss = [&]() {
    const Ref r = reference(c, in, nullptr);
    double l = 0;
    for (size_t i = 0; i < r.out.size(); ++i) l += dout[i] * r.out[i];
    return l;
  };
  double worst = 0;
  View* views[] = {&in.q, &in.k, &in.v};
  const std::vector<double>* grads[] = {&ref.dq, &ref.dk, &ref.dv};
  for (int w = 0; w < 3; ++w)
    for (int probe = 0; probe < 4; ++probe) {
      View& v = *views[w];
      const int t = probe % v.T, h = probe % c.H, d = (5 * probe + 3) % c.D;
      float& x = v.at(0, t, h, d);
      const float x0 = x, eps = 1.0f / 256;  // exact in f32, so x0 ± eps is too
      x = x0 + eps;
      const double lp = loss();
      x = x0 - eps;
      const double lm = loss();
      x = x0;
      const double fd = (lp - lm) / (2.0 * eps);
      worst = vl::simt_test::worse(worst, std::fabs(fd - (*grads[w])[((static_cast<size_t>(t)) * c.H + h) * c.D + d]));
    }
  check(worst < 1e-4, "the analytic reference gradient agrees with central differences (max error " + err_str(worst) + ")");
}

Case grid_case(std::string name, int B, int H, int N, int M, int D, int64_t cols, int64_t offset) {
  Case c{std::move(name), B, H, N, M, D};
  c.qp.cols = cols, c.qp.offset = offset;
  return c;
}

void explicit_positions(Pos& p, int count, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-3.0f, 9.0f);
  p.x.resize(count), p.y.resize(count);
  for (auto& v : p.x) v = dist(rng);
  for (auto& v : p.y) v = dist(rng);
}

}  // namespace

int main() {
  test_ldmatrix_trans();
  std::mt19937 rng(2403);
  test_reference_gradient(rng);
  constexpr double kTol = 5e-5;  // 3×bf16 against double, inputs in [-1, 1]

  // Forward.
  test_forward<k::AttnSplit>(grid_case("class token + 2x3 grid", 1, 2, 7, 7, 16, 3, -1), kTol, rng);
  {
    Case c = grid_case("packed qkv view, grid step 0.5 bias 0.25", 2, 3, 33, 33, 32, 6, -1);
    c.qp.step = 0.5f, c.qp.bias = 0.25f, c.qkv = 1;
    test_forward<k::AttnSplit>(c, kTol, rng);
  }
  test_forward<k::AttnSplit>(grid_case("two query and key tiles, ragged", 1, 2, 70, 70, 64, 7, 0), kTol, rng);
  {
    Case c{"one token, rope off, scale 0.3", 2, 1, 1, 1, 80};
    c.rope = false, c.scale = 0.3;
    test_forward<k::AttnSplit>(c, kTol, rng);
  }
  {
    // GSA: queries on the full grid, sub-sampled keys at b + (m mod W)·sr (W the full width).
    Case c = grid_case("cross attention, packed kv, sr 4", 1, 2, 33, 7, 128, 8, 0);
    c.kp.cols = 8, c.kp.step = 4.0f, c.kp.bias = 0.75f, c.k_same = false, c.qkv = 2;
    test_forward<k::AttnSplit>(c, kTol, rng);
  }
  {
    Case c{"explicit positions", 1, 2, 20, 45, 48};
    explicit_positions(c.qp, c.N, rng);
    explicit_positions(c.kp, c.M, rng);
    c.k_same = false, c.unaligned = true;
    test_forward<k::AttnSplit>(c, kTol, rng);
  }
  test_forward<k::AttnSplit>(grid_case("LSA windows as batch, D 72 padded to 80", 4, 1, 9, 9, 72, 3, 0), kTol, rng);
  {
    Case c = grid_case("D 20 padded to 32, index offset 5, unaligned rows", 1, 2, 12, 12, 20, 4, 5);
    c.unaligned = true;
    test_forward<k::AttnSplit>(c, kTol, rng);
  }
  {
    Case c = grid_case("three key tiles, unaligned rows", 1, 1, 70, 130, 32, 7, 0);
    c.kp.cols = 10, c.kp.step = 2.0f, c.kp.bias = 0.5f, c.k_same = false, c.unaligned = true;
    test_forward<k::AttnSplit>(c, kTol, rng);
  }
  test_forward<k::AttnSplit>(grid_case("D 96", 1, 1, 17, 17, 96, 4, -1), kTol, rng);
  {
    Case c{"D 112, explicit query positions, key grid", 1, 1, 5, 40, 112};
    explicit_positions(c.qp, c.N, rng);
    c.kp.cols = 5, c.kp.offset = -1, c.k_same = false;
    test_forward<k::AttnSplit>(c, kTol, rng);
  }
  test_forward<k::AttnBf16>(grid_case("one bf16 pass", 1, 2, 33, 33, 64, 6, -1), 5e-3, rng);

  // Backward, every gradient layout.
  test_backward<k::AttnSplit>(grid_case("class token grid", 1, 2, 7, 7, 16, 3, -1), Layout::Separate, kTol, rng);
  {
    Case c = grid_case("packed qkv input, two tiles", 1, 1, 70, 70, 64, 7, -1);
    c.qkv = 1;
    test_backward<k::AttnSplit>(c, Layout::PackedQKV, kTol, rng);
  }
  {
    Case c = grid_case("cross attention, sr 2", 1, 2, 33, 7, 128, 6, 0);
    explicit_positions(c.qp, c.N, rng);
    c.kp.cols = 6, c.kp.step = 2.0f, c.kp.bias = 0.5f, c.k_same = false, c.qkv = 2;
    test_backward<k::AttnSplit>(c, Layout::PackedKV, kTol, rng);
  }
  {
    Case c{"rope off, scale 0.2, D 40 padded to 48", 2, 1, 20, 20, 40};
    c.rope = false, c.scale = 0.2;
    test_backward<k::AttnSplit>(c, Layout::Separate, kTol, rng);
  }
  test_backward<k::AttnSplit>(grid_case("LSA windows as batch, D 32", 3, 2, 9, 9, 32, 3, 0), Layout::PackedQKV, kTol, rng);
  test_backward<k::AttnSplit>(grid_case("D 108 padded to 112", 1, 1, 12, 12, 108, 4, -1), Layout::Separate, kTol, rng);
  // The cp.async pipeline over several streamed tiles (32 rows at D 128: 4
  // query tiles per key block, 4 key tiles per query block), and the same
  // shapes through plain loads.
  {
    Case c = grid_case("four streamed tiles each way, D 128", 1, 1, 100, 100, 128, 10, 0);
    test_backward<k::AttnSplit>(c, Layout::Separate, kTol, rng);
    test_backward<k::AttnSplit>(c, Layout::Separate, kTol, rng, false);
  }
  {
    Case c = grid_case("packed qkv input, two tiles", 1, 1, 70, 70, 64, 7, -1);
    c.qkv = 1;
    test_backward<k::AttnSplit>(c, Layout::PackedQKV, kTol, rng, false);
  }
  {
    Case c = grid_case("unaligned rows, two key tiles", 1, 2, 20, 70, 32, 4, -1);
    c.kp.cols = 7, c.k_same = false, c.unaligned = true;
    test_backward<k::AttnSplit>(c, Layout::Separate, kTol, rng);
  }
  test_backward<k::AttnBf16>(grid_case("one bf16 pass", 1, 1, 17, 17, 32, 4, -1), Layout::Separate, 5e-3, rng);
  // fp16 operands (Q, K, V, P and dS rounded inside the kernels) against the
  // exact reference: fp16 keeps 3 more mantissa bits than bf16, so the
  // tolerance is one the bf16 pass misses (its errors above are 3.5e-4 to 1.1e-3).
  test_forward<k::AttnF16>(grid_case("one f16 pass", 1, 2, 33, 33, 64, 6, -1), 3e-4, rng);
  test_backward<k::AttnF16>(grid_case("one f16 pass", 1, 1, 17, 17, 32, 4, -1), Layout::Separate, 3e-4, rng);

  // The Hopper forward (wgmma for both products), 16-bit operands, at the
  // tolerances of the mma.sync passes above. Two query tiles and several key
  // blocks with ragged ends; cross attention with packed kv; D 20 padded to 32.
  test_forward<k::AttnBf16>(grid_case("three query tiles and key blocks, ragged", 1, 2, 260, 260, 64, 17, -1), 5e-3, rng, true);
  test_forward<k::AttnF16>(grid_case("three query tiles and key blocks, ragged", 1, 1, 260, 260, 64, 17, -1), 3e-4, rng, true);
  {
    // D 128: blocks of 64 keys, so 300 keys wrap the 3-stage ring.
    Case c = grid_case("cross attention, packed kv, sr 4, D 128, five key blocks", 2, 1, 33, 300, 128, 8, 0);
    c.kp.cols = 20, c.kp.step = 4.0f, c.kp.bias = 0.75f, c.k_same = false, c.qkv = 2;
    test_forward<k::AttnBf16>(c, 5e-3, rng, true);
  }
  {
    Case c{"explicit positions, D 96", 1, 2, 20, 45, 96};
    explicit_positions(c.qp, c.N, rng);
    explicit_positions(c.kp, c.M, rng);
    c.k_same = false;
    test_forward<k::AttnF16>(c, 3e-4, rng, true);
  }
  {
    Case c = grid_case("packed qkv view, D 20 padded to 32, rope off", 3, 2, 9, 9, 20, 3, 0);
    c.rope = false, c.scale = 0.3, c.qkv = 1;
    test_forward<k::AttnBf16>(c, 5e-3, rng, true);
  }
  // The 3xbf16 split (f32 arithmetic) on wgmma, at the mma.sync kernel's tolerance: blocks of 64
  // keys (D 64: 5 blocks wrap the 3-stage ring; D 128: a 2-stage ring).
  test_forward<k::AttnSplit>(grid_case("three query tiles, five key blocks, ragged", 1, 2, 260, 260, 64, 17, -1), kTol, rng, true);
  {
    Case c = grid_case("cross attention, packed kv, sr 4, D 128", 1, 2, 40, 150, 128, 8, 0);
    c.kp.cols = 15, c.kp.step = 4.0f, c.kp.bias = 0.75f, c.k_same = false, c.qkv = 2;
    test_forward<k::AttnSplit>(c, kTol, rng, true);
  }
  {
    Case c{"explicit positions, D 96", 2, 1, 20, 45, 96};
    explicit_positions(c.qp, c.N, rng);
    explicit_positions(c.kp, c.M, rng);
    c.k_same = false;
    test_forward<k::AttnSplit>(c, kTol, rng, true);
  }
  // The Hopper backward kernels (dq; dk/dv where it has a kernel for the
  // width): two query tiles with a ragged end, blocks of 64 keys or queries
  // wrapping the 3-stage ring; packed qkv gradients; D 128 (dq); the split
  // at D 64; D 96 (dk/dv, 32-query blocks); D 20 padded to 32.
  test_backward<k::AttnBf16>(grid_case("two query tiles, five key blocks, ragged", 1, 2, 260, 260, 64, 17, -1), Layout::PackedQKV, 5e-3,
                             rng, true, kWgDq | kWgDkdv);
  {
    Case c = grid_case("cross attention, sr 4, D 128", 2, 1, 40, 150, 128, 8, 0);
    c.kp.cols = 15, c.kp.step = 4.0f, c.kp.bias = 0.75f, c.k_same = false;
    test_backward<k::AttnF16>(c, Layout::Separate, 3e-4, rng, true, kWgDq);
  }
  test_backward<k::AttnSplit>(grid_case("class token grid, D 64", 1, 2, 197, 197, 64, 14, -1), Layout::Separate, kTol, rng, true,
                              kWgDq | kWgDkdv);
  {
    // dk/dv at D 96 (blocks of 32 queries), cross attention: more keys than one block's 128.
    Case c = grid_case("cross attention, sr 2, D 96", 1, 2, 70, 150, 96, 8, 0);
    c.kp.cols = 15, c.kp.step = 2.0f, c.kp.bias = 0.5f, c.k_same = false;
    test_backward<k::AttnF16>(c, Layout::PackedKV, 3e-4, rng, true, kWgDkdv);
  }
  {
    Case c = grid_case("D 20 padded to 32, rope off", 3, 2, 9, 9, 20, 3, 0);
    c.rope = false, c.scale = 0.3;
    test_backward<k::AttnBf16>(c, Layout::Separate, 5e-3, rng, true, kWgDq | kWgDkdv);
  }
  return vl::simt_test::finish();
}
