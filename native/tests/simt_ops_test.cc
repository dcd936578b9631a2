// The SIMT runner and the kernels written against cuda/simt.cuh, on the CPU:
// runner mechanics (barriers, shared memory, shuffles, votes, ldmatrix, and
// the errors of divergent code), then each elementwise, normalisation, loss and
// optimizer kernel against a plain reference. Built and run by test/simt.test.ts.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/half.h"
#include "cuda/kernels/activation.cuh"
#include "cuda/kernels/binary.cuh"
#include "cuda/kernels/copy.cuh"
#include "cuda/kernels/cross_entropy.cuh"
#include "cuda/kernels/layer_norm.cuh"
#include "cuda/kernels/optim.cuh"
#include "cuda/kernels/reduce.cuh"
#include "cuda/kernels/softmax.cuh"
#include "tests/simt_check.h"
#include "tests/simt_runner.h"

using vl::simt::Dim;
using vl::simt::launch;

namespace {

using vl::simt_test::check;

std::string launch_error(Dim grid, Dim block, const std::function<void()>& body) {
  try {
    launch(grid, block, body);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// Kernels exercising the runner itself.
VL_GLOBAL void reverse_in_shared(const float* in, float* out) {
  VL_SHARED float buf[256];
  const int t = vl::simt::thread_x(), n = vl::simt::block_dim_x();
  buf[t] = in[vl::simt::block_x() * n + t];
  vl::simt::sync_threads();  // every write is visible after the barrier
  out[vl::simt::block_x() * n + t] = buf[n - 1 - t];
}

VL_GLOBAL void warp_ops(float* sums, float* from_lane3, unsigned* votes) {
  const int t = vl::simt::thread_x();
  float v = static_cast<float>(t);
  for (int m = 16; m > 0; m >>= 1) v += vl::simt::shfl_xor(v, m);
  sums[t] = v;
  from_lane3[t] = vl::simt::shfl(static_cast<float>(t * 10), 3);
  votes[t] = vl::simt::ballot(t % 3 == 0);
}

VL_GLOBAL void divergent_barrier() {
  if (vl::simt::thread_x() < 16) vl::simt::sync_threads();
}

VL_GLOBAL void divergent_shuffle(float* out) {
  if (vl::simt::lane() < 8) out[vl::simt::thread_x()] = vl::simt::shfl_xor(1.0f, 1);
}

VL_GLOBAL void ldmatrix_probe(uint32_t* out) {
  VL_SHARED_ALIGNED(16) uint16_t tile[16][16];
  const int t = vl::simt::thread_x();
  for (int i = t; i < 256; i += 32) tile[i / 16][i % 16] = static_cast<uint16_t>(i);
  vl::simt::sync_threads();
  uint32_t r[4];
  vl::simt::ldmatrix_x4(r, &tile[(t & 7) + ((t >> 3) & 1) * 8][(t >> 4) * 8]);
  for (int i = 0; i < 4; ++i) out[t * 4 + i] = r[i];
}

void test_runner() {
  {
    std::vector<float> in(2 * 96), out(2 * 96);
    for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i);
    launch({2, 1}, {96, 1}, [&] { reverse_in_shared(in.data(), out.data()); });
    bool ok = true;
    for (int b = 0; b < 2; ++b)
      for (int t = 0; t < 96; ++t) ok &= out[b * 96 + t] == in[b * 96 + 95 - t];
    check(ok, "shared memory and sync_threads: 2 blocks of 96 threads reverse their rows");
  }
  {
    std::vector<float> sums(64), lane3(64);
    std::vector<unsigned> votes(64);
    launch({1, 1}, {64, 1}, [&] { warp_ops(sums.data(), lane3.data(), votes.data()); });
    bool sums_ok = true, lane_ok = true, votes_ok = true;
    unsigned want = 0;
    for (int l = 0; l < 32; ++l) want |= (l % 3 == 0 ? 1u : 0u) << l;
    unsigned want_w1 = 0;
    for (int l = 0; l < 32; ++l) want_w1 |= ((32 + l) % 3 == 0 ? 1u : 0u) << l;
    for (int t = 0; t < 64; ++t) {
      const int w = t / 32;
      sums_ok &= sums[t] == static_cast<float>(32 * 32 * w + 31 * 32 / 2);
      lane_ok &= lane3[t] == static_cast<float>((32 * w + 3) * 10);
      votes_ok &= votes[t] == (w ? want_w1 : want);
    }
    check(sums_ok, "shfl_xor butterfly sums each warp");
    check(lane_ok, "shfl broadcasts lane 3 within each warp");
    check(votes_ok, "ballot gathers one bit per lane");
  }
  {
    const std::string e = launch_error({1, 1}, {32, 1}, [] { divergent_barrier(); });
    check(e.find("divergent") != std::string::npos, "a barrier only some threads reach is an error: " + e);
  }
  {
    std::vector<float> out(32);
    const std::string e = launch_error({1, 1}, {32, 1}, [&] { divergent_shuffle(out.data()); });
    check(e.find("8 of 32 lanes") != std::string::npos, "a shuffle only some lanes reach is an error: " + e);
  }
  {
    const std::string e = launch_error({1, 1}, {48, 1}, [] { (void)vl::simt::shfl_xor(1.0f, 1); });
    check(e.find("partial warp") != std::string::npos, "warp collectives need whole warps: " + e);
  }
  {
    const std::string e = launch_error({1, 1}, {4, 1}, [] {
      if (vl::simt::thread_x() == 2) throw std::runtime_error("bad index");
    });
    check(e.find("thread 2: bad index") != std::string::npos, "an exception in a thread names the block and thread: " + e);
  }
  {
    std::vector<uint32_t> out(32 * 4);
    launch({1, 1}, {32, 1}, [&] { ldmatrix_probe(out.data()); });
    bool ok = true;
    for (int l = 0; l < 32; ++l)
      for (int m = 0; m < 4; ++m) {
        const int row = (m & 1) * 8 + l / 4, col = (m >> 1) * 8 + 2 * (l % 4);
        const uint32_t want = static_cast<uint32_t>(row * 16 + col) | static_cast<uint32_t>(row * 16 + col + 1) << 16;
        ok &= out[l * 4 + m] == want;
      }
    check(ok, "ldmatrix_x4: register m of lane l holds row l/4, columns 2(l%4)..+1 of matrix m");
  }
}

void test_softmax() {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  for (int cols : {1, 7, 128, 1000}) {
    const int rows = 3;
    std::vector<float> x(rows * cols), y(rows * cols), lse(rows);
    for (auto& v : x) v = dist(rng);
    launch({rows, 1}, {128, 1}, [&] { vl::cuda::kernels::softmax_rows<128>(x.data(), y.data(), lse.data(), cols); });
    double worst = 0;
    for (int r = 0; r < rows; ++r) {
      double m = -INFINITY, s = 0;
      for (int c = 0; c < cols; ++c) m = vl::simt_test::worse(m, static_cast<double>(x[r * cols + c]));
      for (int c = 0; c < cols; ++c) s += std::exp(x[r * cols + c] - m);
      for (int c = 0; c < cols; ++c) worst = vl::simt_test::worse(worst, std::fabs(y[r * cols + c] - std::exp(x[r * cols + c] - m) / s));
      worst = vl::simt_test::worse(worst, std::fabs(lse[r] - (m + std::log(s))));
    }
    check(worst < 2e-6, "softmax_rows<128> (and its log-sum-exp) matches the reference, " + std::to_string(cols) + " columns (max error " + std::to_string(worst) + ")");
  }
}

// LayerNorm forward (plain and with the residual add) and backward against
// a double-precision reference.
void test_layer_norm() {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.5f, 2.0f);
  const float eps = 1e-6f;
  for (int C : {1, 5, 96, 300}) {
    const int rows = 4;
    std::vector<float> x(rows * C), r(rows * C), w(C), b(C), dy(rows * C);
    for (auto* v : {&x, &r, &w, &b, &dy})
      for (auto& e : *v) e = dist(rng);
    for (int residual = 0; residual < 2; ++residual) {
      for (int affine = 0; affine < 2; ++affine) {
        std::vector<float> sum(rows * C), y(rows * C), mean(rows), rstd(rows), dx(rows * C), dw(C), db(C);
        launch({rows, 1}, {64, 1}, [&] {
          vl::cuda::kernels::layer_norm_rows<64>(x.data(), residual ? r.data() : nullptr, residual ? sum.data() : nullptr,
                                                 affine ? w.data() : nullptr, affine ? b.data() : nullptr, y.data(),
                                                 mean.data(), rstd.data(), C, eps);
        });
        const float* src = residual ? sum.data() : x.data();
        launch({rows, 1}, {64, 1}, [&] {
          vl::cuda::kernels::layer_norm_backward_rows<64>(dy.data(), src, mean.data(), rstd.data(), affine ? w.data() : nullptr, dx.data(), C);
        });
        launch({(C + 31) / 32, 1}, {32, 1}, [&] {
          vl::cuda::kernels::layer_norm_param_grads(dy.data(), src, mean.data(), rstd.data(), dw.data(), db.data(), rows, C);
        });
        double fwd = 0, bwd = 0, grads = 0;
        std::vector<double> rw(C, 0.0), rb(C, 0.0);
        for (int i = 0; i < rows; ++i) {
          std::vector<double> sv(C);
          for (int c = 0; c < C; ++c) sv[c] = static_cast<double>(x[i * C + c]) + (residual ? r[i * C + c] : 0.0);
          double m = 0, var = 0;
          for (double v : sv) m += v;
          m /= C;
          for (double v : sv) var += (v - m) * (v - m);
          const double rs = 1.0 / std::sqrt(var / C + eps);
          double mg = 0, mgx = 0;
          for (int c = 0; c < C; ++c) {
            const double xh = (sv[c] - m) * rs;
            const double want = affine ? xh * w[c] + b[c] : xh;
            fwd = vl::simt_test::worse(fwd, std::fabs(y[i * C + c] - want));
            if (residual) fwd = vl::simt_test::worse(fwd, std::fabs(sum[i * C + c] - sv[c]));
            const double g = affine ? dy[i * C + c] * static_cast<double>(w[c]) : dy[i * C + c];
            mg += g / C;
            mgx += g * xh / C;
            rw[c] += dy[i * C + c] * xh;
            rb[c] += dy[i * C + c];
          }
          fwd = vl::simt_test::worse(fwd, std::fabs(mean[i] - m), std::fabs(rstd[i] - rs) / rs);
          for (int c = 0; c < C; ++c) {
            const double xh = (sv[c] - m) * rs;
            const double g = affine ? dy[i * C + c] * static_cast<double>(w[c]) : dy[i * C + c];
            bwd = vl::simt_test::worse(bwd, std::fabs(dx[i * C + c] - rs * (g - mg - xh * mgx)));
          }
        }
        for (int c = 0; c < C; ++c) grads = vl::simt_test::worse(grads, std::fabs(dw[c] - rw[c]), std::fabs(db[c] - rb[c]));
        const std::string what = " C=" + std::to_string(C) + (residual ? ", residual" : "") + (affine ? ", affine" : "");
        check(fwd < 1e-4, "layer_norm_rows" + what + " (max error " + std::to_string(fwd) + ")");
        check(bwd < 1e-4, "layer_norm_backward_rows" + what + " (max error " + std::to_string(bwd) + ")");
        check(grads < 1e-4, "layer_norm_param_grads" + what + " (max error " + std::to_string(grads) + ")");
      }
    }
  }
}

// SiLU, GELU and the SwiGLU gate, forward and backward, against double
// references; a grid smaller than the data exercises the grid-stride loops.
void test_activations() {
  using vl::cuda::kernels::Act;
  namespace k = vl::cuda::kernels;
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  const int rows = 7, H = 45, n = rows * 2 * H;
  std::vector<float> x(n), dy(n);
  for (auto& v : x) v = dist(rng);
  for (auto& v : dy) v = dist(rng);
  auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  auto silu = [&](double v) { return v * sig(v); };
  auto dsilu = [&](double v) { return sig(v) * (1.0 + v * (1.0 - sig(v))); };
  auto gelu = [](double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); };
  auto dgelu = [](double v) { return 0.5 * (1.0 + std::erf(v / std::sqrt(2.0))) + v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI); };
  const Dim grid{3, 1}, block{64, 1};
  std::vector<float> y(n), dx(n);
  double e = 0;
  launch(grid, block, [&] { k::activation_forward<Act::Silu>(x.data(), y.data(), n); });
  for (int i = 0; i < n; ++i) e = vl::simt_test::worse(e, std::fabs(y[i] - silu(x[i])));
  launch(grid, block, [&] { k::activation_backward<Act::Silu>(dy.data(), x.data(), dx.data(), n); });
  for (int i = 0; i < n; ++i) e = vl::simt_test::worse(e, std::fabs(dx[i] - dy[i] * dsilu(x[i])));
  check(e < 1e-4, "SiLU forward and backward (max error " + std::to_string(e) + ")");
  e = 0;
  launch(grid, block, [&] { k::activation_forward<Act::Gelu>(x.data(), y.data(), n); });
  for (int i = 0; i < n; ++i) e = vl::simt_test::worse(e, std::fabs(y[i] - gelu(x[i])));
  launch(grid, block, [&] { k::activation_backward<Act::Gelu>(dy.data(), x.data(), dx.data(), n); });
  for (int i = 0; i < n; ++i) e = vl::simt_test::worse(e, std::fabs(dx[i] - dy[i] * dgelu(x[i])));
  check(e < 1e-4, "GELU (erf) forward and backward (max error " + std::to_string(e) + ")");
  std::vector<float> h(rows * H), dh(rows * H), da(n);
  for (auto& v : dh) v = dist(rng);
  launch(grid, block, [&] { k::swiglu_gate_forward(x.data(), h.data(), rows, H); });
  launch(grid, block, [&] { k::swiglu_gate_backward(dh.data(), x.data(), da.data(), rows, H); });
  e = 0;
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < H; ++j) {
      const double a1 = x[r * 2 * H + j], a2 = x[r * 2 * H + H + j], g = dh[r * H + j];
      e = vl::simt_test::worse(e, std::fabs(h[r * H + j] - silu(a1) * a2), std::fabs(da[r * 2 * H + j] - g * a2 * dsilu(a1)),
                    std::fabs(da[r * 2 * H + H + j] - g * silu(a1)));
    }
  check(e < 1e-4, "SwiGLU gate forward and backward (max error " + std::to_string(e) + ")");
}

// Cross-entropy with label smoothing, forward and backward, i32 and i64
// labels, against a double reference; a bad label raises the flag.
template <typename L>
void test_cross_entropy(const char* label_type) {
  namespace k = vl::cuda::kernels;
  std::mt19937 rng(13);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  for (int K : {3, 10, 1000}) {
    for (float eps : {0.0f, 0.1f}) {
      const int B = 5;
      std::vector<float> z(B * K), dloss(B), loss(B), lse(B), dz(B * K);
      std::vector<L> y(B);
      for (auto& v : z) v = dist(rng);
      for (auto& v : dloss) v = dist(rng);
      for (int i = 0; i < B; ++i) y[i] = static_cast<L>((i * 7 + 1) % K);
      int bad = 0;
      launch({B, 1}, {64, 1}, [&] { k::cross_entropy_rows<64, L>(z.data(), y.data(), loss.data(), lse.data(), K, eps, &bad); });
      launch({3, 1}, {64, 1}, [&] { k::cross_entropy_backward_elems<L>(dloss.data(), z.data(), lse.data(), y.data(), dz.data(), B, K, eps, &bad); });
      double e = 0;
      for (int i = 0; i < B; ++i) {
        double m = -INFINITY, s = 0, sz = 0;
        for (int j = 0; j < K; ++j) m = vl::simt_test::worse(m, static_cast<double>(z[i * K + j]));
        for (int j = 0; j < K; ++j) {
          s += std::exp(z[i * K + j] - m);
          sz += z[i * K + j];
        }
        const double l = m + std::log(s);
        e = vl::simt_test::worse(e, std::fabs(lse[i] - l), std::fabs(loss[i] - (l - (1.0 - eps) * z[i * K + y[i]] - eps / K * sz)));
        for (int j = 0; j < K; ++j) {
          const double p = std::exp(z[i * K + j] - l);
          e = vl::simt_test::worse(e, std::fabs(dz[i * K + j] - dloss[i] * (p - (j == static_cast<int>(y[i]) ? 1.0 - eps : 0.0) - eps / K)));
        }
      }
      check(e < 1e-4 && bad == 0, std::string("cross_entropy ") + label_type + " labels, K=" + std::to_string(K) + ", smoothing " +
                                      std::to_string(eps) + " (max error " + std::to_string(e) + ")");
    }
  }
  std::vector<float> z(2 * 4, 0.0f), loss(2, -1.0f), lse(2, -1.0f);
  std::vector<L> y{1, 4};
  int bad = 0;
  launch({2, 1}, {32, 1}, [&] { k::cross_entropy_rows<32, L>(z.data(), y.data(), loss.data(), lse.data(), 4, 0.0f, &bad); });
  check(bad == 1 && loss[1] == -1.0f && std::fabs(loss[0] - std::log(4.0)) < 1e-6,
        std::string("cross_entropy ") + label_type + ": label 4 of 4 classes raises the flag; the good row is still computed");
}

// Three AdamW steps (both lerp branches) against a double reference of
// torch.optim.AdamW's update.
void test_soft_targets_and_bce() {
  namespace k = vl::cuda::kernels;
  std::mt19937 rng(29);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  for (int K : {3, 200}) {
    const int B = 4;
    std::vector<float> z(B * K), t(B * K), dloss(B), loss(B), lse(B), dz(B * K);
    for (auto& v : z) v = dist(rng);
    for (auto& v : t) v = unit(rng) / K;  // mixup-like: rows sum to about 1/2, not 1
    for (auto& v : dloss) v = dist(rng);
    launch({B, 1}, {64, 1}, [&] { k::soft_cross_entropy_rows<64>(z.data(), t.data(), loss.data(), lse.data(), K); });
    launch({B, 1}, {64, 1}, [&] { k::soft_cross_entropy_backward_rows<64>(dloss.data(), z.data(), lse.data(), t.data(), dz.data(), K); });
    double e = 0;
    for (int i = 0; i < B; ++i) {
      double m = -INFINITY, s = 0, total = 0, want = 0;
      for (int j = 0; j < K; ++j) m = vl::simt_test::worse(m, static_cast<double>(z[i * K + j]));
      for (int j = 0; j < K; ++j) s += std::exp(z[i * K + j] - m), total += t[i * K + j];
      const double l = m + std::log(s);
      for (int j = 0; j < K; ++j) want += t[i * K + j] * (l - z[i * K + j]);
      e = vl::simt_test::worse(e, std::fabs(lse[i] - l), std::fabs(loss[i] - want));
      for (int j = 0; j < K; ++j)
        e = vl::simt_test::worse(e, std::fabs(dz[i * K + j] - dloss[i] * (std::exp(z[i * K + j] - l) * total - t[i * K + j])));
    }
    check(e < 1e-4, "soft_cross_entropy forward and backward, K=" + std::to_string(K) + " (max error " + std::to_string(e) + ")");
  }
  const int n = 257;
  std::vector<float> z(n), t(n), d(n), loss(n), dz(n);
  for (int i = 0; i < n; ++i) z[i] = (i - 128) * 0.8f, t[i] = unit(rng), d[i] = dist(rng);  // |z| up to 100: no overflow
  launch({2, 1}, {64, 1}, [&] { k::bce_with_logits(z.data(), t.data(), loss.data(), n); });
  launch({2, 1}, {64, 1}, [&] { k::bce_with_logits_backward(d.data(), z.data(), t.data(), dz.data(), n); });
  double e = 0;
  for (int i = 0; i < n; ++i) {
    const double zi = z[i], sig = 1.0 / (1.0 + std::exp(-zi));
    const double want = std::max(zi, 0.0) - zi * t[i] + std::log1p(std::exp(-std::fabs(zi)));
    e = vl::simt_test::worse(e, std::fabs(loss[i] - want) / std::max(1.0, std::fabs(want)), std::fabs(dz[i] - d[i] * (sig - t[i])));
  }
  check(e < 1e-5 && std::isfinite(loss[0]) && std::isfinite(dz[n - 1]),
        "bce_with_logits forward and backward for |z| up to 100 (max error " + std::to_string(e) + ")");
}

void test_adamw() {
  namespace k = vl::cuda::kernels;
  std::mt19937 rng(17);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (float beta1 : {0.9f, 0.3f}) {
    const int n = 777;
    std::vector<float> p(n), g(n), m(n, 0.0f), v(n, 0.0f);
    for (auto& e : p) e = dist(rng);
    std::vector<double> rp(p.begin(), p.end()), rm(n, 0.0), rv(n, 0.0);
    const double lr = 1e-2, wd = 0.05, beta2 = 0.999, eps = 1e-8;
    double e = 0;
    for (int step = 1; step <= 3; ++step) {
      for (auto& x : g) x = dist(rng);
      const double bc1 = 1 - std::pow(beta1, step), bc2 = 1 - std::pow(beta2, step);
      const k::AdamWStep s{static_cast<float>(1 - lr * wd), 1 - beta1, static_cast<float>(beta2), static_cast<float>(1 - beta2),
                           static_cast<float>(-lr / bc1), static_cast<float>(std::sqrt(bc2)), static_cast<float>(eps)};
      launch({4, 1}, {64, 1}, [&] {
        if (std::fabs(s.lerp_weight) < 0.5f)
          k::adamw_update<true>(p.data(), g.data(), m.data(), v.data(), n, s);
        else
          k::adamw_update<false>(p.data(), g.data(), m.data(), v.data(), n, s);
      });
      for (int i = 0; i < n; ++i) {
        rp[i] *= 1 - lr * wd;
        rm[i] = beta1 * rm[i] + (1 - beta1) * g[i];
        rv[i] = beta2 * rv[i] + (1 - beta2) * g[i] * static_cast<double>(g[i]);
        rp[i] -= lr / bc1 * rm[i] / (std::sqrt(rv[i]) / std::sqrt(bc2) + eps);
        e = vl::simt_test::worse(e, std::fabs(p[i] - rp[i]), std::fabs(m[i] - rm[i]), std::fabs(v[i] - rv[i]));
      }
    }
    check(e < 1e-5, "adamw_update, beta1 " + std::to_string(beta1) + ", 3 steps (max error " + std::to_string(e) + ")");
  }
}

// A TensorArg over host memory (row-major strides unless given).
vl::TensorArg arg(void* data, vl::DType dtype, std::vector<int64_t> shape, std::vector<int64_t> strides = {}) {
  vl::TensorArg a{};
  a.data = data;
  a.dtype = dtype;
  a.ndim = static_cast<int>(shape.size());
  a.numel = 1;
  for (int64_t d : shape) a.numel *= d;
  if (strides.empty()) {
    strides.assign(shape.size(), 1);
    for (int d = a.ndim - 2; d >= 0; --d) strides[d] = strides[d + 1] * shape[d + 1];
  }
  a.contiguous = true;
  int64_t expect = 1;
  for (int d = a.ndim - 1; d >= 0; --d) {
    a.shape[d] = shape[d];
    a.strides[d] = strides[d];
    if (shape[d] != 1 && strides[d] != expect) a.contiguous = false;
    expect *= shape[d];
  }
  return a;
}

// The binary kernels of the CUDA add/sub/mul/div ops: broadcast operands
// (stride 0), f32 and bf16 against plain float math, int64 wrap-around,
// INT64_MIN / -1, and integer division by zero raising the flag.
void test_sgd() {
  namespace k = vl::cuda::kernels;
  std::mt19937 rng(19);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  struct Case {
    float momentum, dampening, wd;
    bool nesterov;
  };
  for (const Case& cs : {Case{0.0f, 0.0f, 0.0f, false}, Case{0.9f, 0.1f, 0.01f, false}, Case{0.9f, 0.0f, 0.05f, true}}) {
    const int n = 555;
    std::vector<float> p(n), g(n), buf(n, 0.0f);
    for (auto& e : p) e = dist(rng);
    std::vector<double> rp(p.begin(), p.end()), rb(n, 0.0);
    const double lr = 0.05;
    double e = 0;
    for (int step = 1; step <= 3; ++step) {
      for (auto& x : g) x = dist(rng);
      const k::SgdStep s{static_cast<float>(-lr), cs.momentum, 1 - cs.dampening, cs.wd, cs.nesterov, step == 1};
      float* b = cs.momentum != 0.0f ? buf.data() : nullptr;
      launch({3, 1}, {64, 1}, [&] { k::sgd_update(p.data(), g.data(), b, n, s); });
      for (int i = 0; i < n; ++i) {
        double gi = g[i] + cs.wd * rp[i];
        if (b) {
          rb[i] = step == 1 ? gi : cs.momentum * rb[i] + (1 - cs.dampening) * gi;
          gi = cs.nesterov ? gi + cs.momentum * rb[i] : rb[i];
          e = vl::simt_test::worse(e, std::fabs(buf[i] - rb[i]));
        }
        rp[i] -= lr * gi;
        e = vl::simt_test::worse(e, std::fabs(p[i] - rp[i]));
      }
    }
    check(e < 1e-5, "sgd_update, momentum " + std::to_string(cs.momentum) + (cs.nesterov ? " nesterov" : "") +
                        ", 3 steps (max error " + std::to_string(e) + ")");
  }
}

void test_lamb_and_sum_of_squares() {
  namespace k = vl::cuda::kernels;
  std::mt19937 rng(23);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  // Sizes around the chunk: one partial, several, and a ragged last chunk.
  for (int n : {1000, static_cast<int>(2 * k::kOptimChunk + 333)}) {
    const int64_t chunks = (n + k::kOptimChunk - 1) / k::kOptimChunk;
    std::vector<float> t(n);
    for (auto& x : t) x = dist(rng);
    std::vector<double> part(chunks);
    float total = 0;
    launch({2, 1}, {k::kOptimThreads, 1}, [&] { k::sum_of_squares_chunks(t.data(), n, part.data()); });
    launch({1, 1}, {k::kOptimThreads, 1}, [&] { k::sum_of_squares_finish(part.data(), chunks, &total); });
    double ref = 0;
    for (float x : t) ref += static_cast<double>(x) * x;
    check(std::fabs(total - ref) <= 1e-6 * ref, "sum_of_squares of " + std::to_string(n) + " values in " +
                                                    std::to_string(chunks) + " chunks");

    std::vector<float> p(n), g(n), m(n, 0.0f), v(n, 0.0f);
    for (auto& x : p) x = dist(rng);
    std::vector<double> rp(p.begin(), p.end()), rm(n, 0.0), rv(n, 0.0);
    const double lr = 1e-2, wd = 0.02, b1 = 0.9, b2 = 0.999, eps = 1e-6;
    double e = 0;
    for (int step = 1; step <= 2; ++step) {
      for (auto& x : g) x = dist(rng);
      const double bc1 = 1 - std::pow(b1, step), bc2 = 1 - std::pow(b2, step);
      const k::LambStep s{static_cast<float>(b1),        static_cast<float>(1 - b1),   static_cast<float>(b2),
                          static_cast<float>(1 - b2),    static_cast<float>(1 / bc1),  static_cast<float>(1 / bc2),
                          static_cast<float>(eps),       static_cast<float>(wd),       static_cast<float>(lr)};
      std::vector<double> sums(2 * chunks);
      float scale = 0;
      launch({2, 1}, {k::kOptimThreads, 1}, [&] { k::lamb_moments(p.data(), g.data(), m.data(), v.data(), n, s, sums.data()); });
      launch({1, 1}, {k::kOptimThreads, 1}, [&] { k::lamb_trust_ratio(sums.data(), chunks, static_cast<float>(lr), &scale); });
      launch({5, 1}, {64, 1}, [&] { k::lamb_apply(p.data(), m.data(), v.data(), n, s, &scale); });
      std::vector<double> u(n);
      double pp = 0, uu = 0;
      for (int i = 0; i < n; ++i) {
        rm[i] = b1 * rm[i] + (1 - b1) * g[i];
        rv[i] = b2 * rv[i] + (1 - b2) * g[i] * static_cast<double>(g[i]);
        u[i] = (rm[i] / bc1) / (std::sqrt(rv[i] / bc2) + eps) + wd * rp[i];
        pp += rp[i] * rp[i];
        uu += u[i] * u[i];
      }
      const double ratio = pp > 0 && uu > 0 ? std::sqrt(pp) / std::sqrt(uu) : 1.0;
      for (int i = 0; i < n; ++i) {
        rp[i] -= lr * ratio * u[i];
        e = vl::simt_test::worse(e, std::fabs(p[i] - rp[i]), std::fabs(m[i] - rm[i]), std::fabs(v[i] - rv[i]));
      }
    }
    check(e < 2e-5, "lamb_update of " + std::to_string(n) + " values, 2 steps (max error " + std::to_string(e) + ")");
  }
}

void test_inplace_helpers() {
  namespace k = vl::cuda::kernels;
  const int n = 301;
  std::vector<float> a(n), b(n);
  for (int i = 0; i < n; ++i) a[i] = 0.01f * i - 1.0f, b[i] = std::sin(0.1f * i);
  std::vector<float> x = a;
  launch({2, 1}, {64, 1}, [&] { k::scale_inplace(x.data(), n, -0.75f); });
  bool ok = true;
  for (int i = 0; i < n; ++i) ok &= x[i] == a[i] * -0.75f;
  check(ok, "scale_inplace");
  x = a;
  launch({2, 1}, {64, 1}, [&] { k::add_inplace(x.data(), b.data(), n, 0.3f); });
  ok = true;
  for (int i = 0; i < n; ++i) ok &= x[i] == a[i] + 0.3f * b[i];
  check(ok, "add_inplace");
  for (float w : {0.25f, 0.9f, 1.0f}) {
    x = a;
    launch({2, 1}, {64, 1}, [&] {
      if (std::fabs(w) < 0.5f)
        k::lerp_inplace<true>(x.data(), b.data(), n, w);
      else
        k::lerp_inplace<false>(x.data(), b.data(), n, w);
    });
    ok = true;
    for (int i = 0; i < n; ++i) {
      const float want = std::fabs(w) < 0.5f ? a[i] + w * (b[i] - a[i]) : b[i] - (b[i] - a[i]) * (1.0f - w);
      ok &= x[i] == want;
    }
    if (w == 1.0f) ok &= x == b;  // torch.lerp: weight 1 gives the end point exactly
    check(ok, "lerp_inplace, weight " + std::to_string(w));
  }
}

void test_binary() {
  namespace k = vl::cuda::kernels;
  using vl::cuda::kernels::BinaryOp;
  {
    // [3, 5] op [1, 5] broadcast along rows.
    std::vector<float> a(15), b(5), out(15);
    for (int i = 0; i < 15; ++i) a[i] = 0.37f * i - 2.0f;
    for (int j = 0; j < 5; ++j) b[j] = 1.5f - 0.7f * j;
    const auto A = arg(a.data(), vl::DType::F32, {3, 5}), B = arg(b.data(), vl::DType::F32, {3, 5}, {0, 1});
    int flag = 0;
    bool ok = !B.contiguous;
    launch({2, 1}, {8, 1}, [&] { k::binary_kernel<BinaryOp::Div, float>(A, B, out.data(), 15, &flag); });
    for (int i = 0; i < 15; ++i) ok &= out[i] == a[i] / b[i % 5];
    launch({2, 1}, {8, 1}, [&] { k::binary_kernel<BinaryOp::Sub, float>(A, B, out.data(), 15, &flag); });
    for (int i = 0; i < 15; ++i) ok &= out[i] == a[i] - b[i % 5];
    check(ok && flag == 0, "binary f32 div and sub with a broadcast operand: exactly float math");
  }
  {
    std::vector<uint16_t> a(6), b(6), out(6);
    for (int i = 0; i < 6; ++i) {
      a[i] = vl::f32_to_bf16(1.1f * i + 0.3f);
      b[i] = vl::f32_to_bf16(3.3f - i);
    }
    int flag = 0;
    launch({1, 1}, {32, 1}, [&] {
      k::binary_kernel<BinaryOp::Mul, vl::cuda::bf16_t>(arg(a.data(), vl::DType::BF16, {6}), arg(b.data(), vl::DType::BF16, {6}),
                                                        reinterpret_cast<vl::cuda::bf16_t*>(out.data()), 6, &flag);
    });
    bool ok = true;
    for (int i = 0; i < 6; ++i) ok &= out[i] == vl::f32_to_bf16(vl::bf16_to_f32(a[i]) * vl::bf16_to_f32(b[i]));
    check(ok, "binary bf16 mul: computed in f32, rounded once to bf16");
  }
  {
    std::vector<int64_t> a{INT64_MAX, INT64_MIN, 7, -7, 9}, b{1, -1, 2, 2, 0}, out(5);
    int flag = 0;
    const auto A = arg(a.data(), vl::DType::I64, {5}), B = arg(b.data(), vl::DType::I64, {5});
    launch({1, 1}, {32, 1}, [&] { k::binary_kernel<BinaryOp::Add, int64_t>(A, B, out.data(), 5, &flag); });
    const bool add_ok = out[0] == INT64_MIN && out[1] == INT64_MAX && out[2] == 9;
    launch({1, 1}, {32, 1}, [&] { k::binary_kernel<BinaryOp::Div, int64_t>(A, B, out.data(), 5, &flag); });
    const bool div_ok = out[0] == INT64_MAX && out[1] == INT64_MIN && out[2] == 3 && out[3] == -3 && out[4] == 0;
    check(add_ok, "binary i64 add wraps around");
    check(div_ok && flag == 1, "binary i64 div: truncates, INT64_MIN / -1 wraps, division by zero writes 0 and raises the flag");
  }
}

// The kernels of the CUDA sum: short rows one per thread, long rows one
// block per chunk (tree in shared memory) and a second pass over the chunk
// partials; f32 against a double sum, i32 into exact i64.
void test_sum() {
  namespace k = vl::cuda::kernels;
  using vl::cuda::kBlock;
  std::mt19937 rng(19);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  {
    const int outer = 37, inner = 9;  // read transposed: strides (1, outer)
    std::vector<float> x(outer * inner), out(outer);
    for (auto& v : x) v = dist(rng);
    const auto in = arg(x.data(), vl::DType::F32, {outer, inner}, {1, outer});
    launch({2, 1}, {32, 1}, [&] { k::sum_thread_rows<float, float>(in, out.data(), outer, inner); });
    double e = 0;
    for (int o = 0; o < outer; ++o) {
      double ref = 0;
      for (int j = 0; j < inner; ++j) ref += x[j * outer + o];
      e = vl::simt_test::worse(e, std::fabs(out[o] - ref));
    }
    check(!in.contiguous && e < 1e-5, "sum_thread_rows over a strided (transposed) f32 input (max error " + std::to_string(e) + ")");
  }
  {
    const int outer = 3, inner = 1000, chunk = 300, chunks = (inner + chunk - 1) / chunk, tasks = outer * chunks;
    std::vector<int32_t> x(outer * inner);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<int32_t>((i * 2654435761u) % 2000001) - 1000000;
    std::vector<int64_t> part(tasks), out(outer);
    const auto in = arg(x.data(), vl::DType::I32, {outer, inner});
    launch({2, 1}, {kBlock, 1}, [&] { k::sum_block_chunks<int32_t, int64_t>(in, part.data(), tasks, inner, chunk, chunks); });
    const auto p = arg(part.data(), vl::DType::I64, {tasks});
    launch({2, 1}, {kBlock, 1}, [&] { k::sum_block_chunks<int64_t, int64_t>(p, out.data(), outer, chunks, chunks, 1); });
    bool ok = true;
    for (int o = 0; o < outer; ++o) {
      int64_t ref = 0;
      for (int j = 0; j < inner; ++j) ref += x[o * inner + j];
      ok &= out[o] == ref;
    }
    check(ok, "sum_block_chunks: i32 rows in chunks, then the chunk partials, exact in i64");
  }
}

// The CUDA copy kernel: strided gathers with dtype conversion (f32 -> bf16
// rounding, float -> int truncation with saturation and NaN -> 0).
void test_copy_into_and_windows() {
  namespace k = vl::cuda::kernels;
  // copy_into: a contiguous [2, 3] block into columns 1..3 of a [2, 5] tensor, converting to f32.
  std::vector<int32_t> src{1, 2, 3, 4, 5, 6};
  std::vector<float> big(10, -1.0f);
  const auto in = arg(src.data(), vl::DType::I32, {2, 3});
  const auto out = arg(big.data() + 1, vl::DType::F32, {2, 3}, {5, 1});
  launch({1, 1}, {32, 1}, [&] { k::copy_into_kernel<int32_t, float>(in, out, 6); });
  check(big == std::vector<float>{-1, 1, 2, 3, -1, -1, 4, 5, 6, -1}, "copy_into a strided slice leaves the rest alone");

  // Windows of 3 over a 2 x 5 x 7 x 2 map (padded to 6 x 9): partition, reference, merge back.
  const k::WindowShape g{2, 5, 7, 2, 3, 2, 3};
  std::vector<float> x(g.B * g.H * g.W * g.C);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i + 1);
  std::vector<float> win(g.B * g.nh * g.nw * g.ws * g.ws * g.C, -1.0f), back(x.size(), -1.0f);
  launch({4, 1}, {64, 1}, [&] { k::window_partition_kernel<float>(x.data(), win.data(), g); });
  bool ok = true;
  for (int64_t w = 0; w < g.B * g.nh * g.nw; ++w)
    for (int64_t t = 0; t < g.ws * g.ws; ++t)
      for (int64_t c = 0; c < g.C; ++c) {
        const int64_t b = w / (g.nh * g.nw), y = (w / g.nw) % g.nh * g.ws + t / g.ws, xx = w % g.nw * g.ws + t % g.ws;
        const float want = y < g.H && xx < g.W ? x[((b * g.H + y) * g.W + xx) * g.C + c] : 0.0f;
        ok &= win[(w * g.ws * g.ws + t) * g.C + c] == want;
      }
  check(ok, "window_partition: 3x3 windows, zero padding at the bottom and right");
  launch({4, 1}, {64, 1}, [&] { k::window_merge_kernel<float>(win.data(), back.data(), g); });
  check(back == x, "window_merge inverts window_partition (padding dropped)");
}

void test_copy() {
  namespace k = vl::cuda::kernels;
  std::vector<float> x{1.5f, -2.7f, 3e10f, -3e10f, NAN, 0.2f};
  std::vector<int32_t> to_int(6);
  launch({1, 1}, {32, 1}, [&] { k::copy_kernel<float, int32_t>(arg(x.data(), vl::DType::F32, {6}), to_int.data(), 6); });
  check(to_int == std::vector<int32_t>{1, -2, INT32_MAX, INT32_MIN, 0, 0}, "copy f32 -> i32 truncates, saturates, maps NaN to 0");
  std::vector<float> m(12);
  for (int i = 0; i < 12; ++i) m[i] = 1.0f + i / 3.0f;
  std::vector<uint16_t> t(12);
  const auto in = arg(m.data(), vl::DType::F32, {4, 3}, {1, 4});  // the transpose of a [3, 4] matrix
  launch({1, 1}, {8, 1}, [&] { k::copy_kernel<float, vl::cuda::bf16_t>(in, reinterpret_cast<vl::cuda::bf16_t*>(t.data()), 12); });
  bool ok = true;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 3; ++c) ok &= t[r * 3 + c] == vl::f32_to_bf16(m[c * 4 + r]);
  check(ok, "copy of a transposed f32 view into contiguous bf16");
}

}  // namespace

// The multi-tensor optimizer kernels against the per-tensor ones, bit for
// bit, on ragged tensors (empty, 1 element, exactly a chunk, a chunk + 1,
// several chunks): tables as large as the parameter space allows and tables
// of 2 tensors (so a call spans several launches and LAMB's partials and
// trust ratios are indexed across tables).
struct MultiCase {
  std::vector<std::vector<float>> p, g, m, v;  // per tensor (m: momentum buffer for SGD)
};

MultiCase multi_case(unsigned seed) {
  namespace k = vl::cuda::kernels;
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  MultiCase c;
  for (int64_t n : {int64_t{1}, k::kOptimChunk, int64_t{0}, k::kOptimChunk + 1, int64_t{300}, 3 * k::kOptimChunk + 77}) {
    std::vector<float> p(n), g(n), m(n), v(n);
    for (int64_t i = 0; i < n; ++i) p[i] = dist(rng), g[i] = dist(rng), m[i] = 0.1f * dist(rng), v[i] = std::fabs(dist(rng));
    c.p.push_back(p), c.g.push_back(g), c.m.push_back(m), c.v.push_back(v);
  }
  return c;
}

bool same_bits(const MultiCase& a, const MultiCase& b) {
  for (size_t t = 0; t < a.p.size(); ++t)
    for (size_t i = 0; i < a.p[t].size(); ++i)
      if (std::memcmp(&a.p[t][i], &b.p[t][i], 4) || std::memcmp(&a.m[t][i], &b.m[t][i], 4) ||
          std::memcmp(&a.v[t][i], &b.v[t][i], 4))
        return false;
  return true;
}

void test_multi_tensor() {
  namespace k = vl::cuda::kernels;
  const double lr = 1e-2, b2 = 0.999, eps = 1e-6;
  // Per-tensor weight decay (off for some) and step counts (a tensor that
  // joined training later has a smaller count).
  const std::vector<double> wd{0.05, 0.0, 0.05, 0.0, 0.05, 0.05};
  const std::vector<int> first_step{1, 1, 1, 2, 1, 3};
  const MultiCase start = multi_case(29);
  const size_t count = start.p.size();
  // A found-inf flag that holds 0 must leave the update as it is without one.
  const float no_overflow = 0.0f;

  for (float b1 : {0.9f, 0.3f})
    for (int per_table : {k::AdamWTable::kMax, 2}) {
      MultiCase ref = start, got = start;
      for (int s = 0; s < 3; ++s) {
        std::vector<k::AdamWStep> steps;
        for (size_t t = 0; t < count; ++t) {
          const int step = first_step[t] + s;
          const double bc1 = 1 - std::pow(b1, step), bc2 = 1 - std::pow(b2, step);
          steps.push_back(k::AdamWStep{static_cast<float>(1 - lr * wd[t]), 1 - b1, static_cast<float>(b2),
                                       static_cast<float>(1 - b2), static_cast<float>(-lr / bc1),
                                       static_cast<float>(std::sqrt(bc2)), static_cast<float>(eps)});
          const int64_t n = static_cast<int64_t>(ref.p[t].size());
          launch({4, 1}, {64, 1}, [&] {
            if (b1 > 0.5f)
              k::adamw_update<true>(ref.p[t].data(), ref.g[t].data(), ref.m[t].data(), ref.v[t].data(), n, steps[t]);
            else
              k::adamw_update<false>(ref.p[t].data(), ref.g[t].data(), ref.m[t].data(), ref.v[t].data(), n, steps[t]);
          });
        }
        const auto fill = [&](k::AdamWTable& tab, int j, int64_t t) {
          tab.ptr[0][j] = got.p[t].data(), tab.ptr[1][j] = got.g[t].data();
          tab.ptr[2][j] = got.m[t].data(), tab.ptr[3][j] = got.v[t].data();
          tab.numel[j] = static_cast<int64_t>(got.p[t].size());
          tab.step[j] = steps[t];
        };
        k::for_each_table<k::AdamWTable>(static_cast<int64_t>(count), fill, [&](const k::AdamWTable& tab, int64_t chunks) {
          launch({static_cast<int>(chunks), 1}, {k::kOptimThreads, 1}, [&] {
            if (b1 > 0.5f)
              k::adamw_update_multi<true>(tab, per_table == 2 ? &no_overflow : nullptr);
            else
              k::adamw_update_multi<false>(tab, per_table == 2 ? &no_overflow : nullptr);
          });
        }, per_table);
      }
      check(same_bits(ref, got), "adamw_update_multi = adamw_update per tensor, bit for bit (beta1 " +
                                     std::to_string(b1) + ", " + std::to_string(per_table) + " tensors per table, 3 steps)");
    }

  struct SgdCase {
    float momentum, dampening;
    bool nesterov;
    int per_table;
  };
  for (const SgdCase& cs : {SgdCase{0.0f, 0.0f, false, k::SgdTable::kMax}, SgdCase{0.9f, 0.1f, false, 2},
                            SgdCase{0.9f, 0.0f, true, k::SgdTable::kMax}}) {
    MultiCase ref = start, got = start;
    for (int s = 0; s < 3; ++s) {
      std::vector<k::SgdStep> steps;
      for (size_t t = 0; t < count; ++t) {
        steps.push_back(k::SgdStep{static_cast<float>(-lr), cs.momentum, 1 - cs.dampening, static_cast<float>(wd[t]),
                                   cs.nesterov, first_step[t] + s == 1});
        float* buf = cs.momentum != 0.0f ? ref.m[t].data() : nullptr;
        const int64_t n = static_cast<int64_t>(ref.p[t].size());
        launch({3, 1}, {64, 1}, [&] { k::sgd_update(ref.p[t].data(), ref.g[t].data(), buf, n, steps[t]); });
      }
      const auto fill = [&](k::SgdTable& tab, int j, int64_t t) {
        tab.ptr[0][j] = got.p[t].data(), tab.ptr[1][j] = got.g[t].data();
        tab.ptr[2][j] = cs.momentum != 0.0f ? got.m[t].data() : nullptr;
        tab.numel[j] = static_cast<int64_t>(got.p[t].size());
        tab.step[j] = steps[t];
      };
      k::for_each_table<k::SgdTable>(static_cast<int64_t>(count), fill, [&](const k::SgdTable& tab, int64_t chunks) {
        launch({static_cast<int>(chunks), 1}, {k::kOptimThreads, 1}, [&] {
          k::sgd_update_multi(tab, cs.per_table == 2 ? &no_overflow : nullptr);
        });
      }, cs.per_table);
    }
    check(same_bits(ref, got), "sgd_update_multi = sgd_update per tensor, bit for bit (momentum " +
                                   std::to_string(cs.momentum) + (cs.nesterov ? " nesterov" : "") + ", " +
                                   std::to_string(cs.per_table) + " tensors per table, 3 steps)");
  }

  for (int per_table : {k::LambTable::kMax, 2}) {
    MultiCase ref = start, got = start;
    const double b1 = 0.9;
    int launches = 0;
    for (int s = 0; s < 2; ++s) {
      std::vector<k::LambStep> steps;
      for (size_t t = 0; t < count; ++t) {
        const int step = first_step[t] + s;
        const double bc1 = 1 - std::pow(b1, step), bc2 = 1 - std::pow(b2, step);
        steps.push_back(k::LambStep{static_cast<float>(b1), static_cast<float>(1 - b1), static_cast<float>(b2),
                                    static_cast<float>(1 - b2), static_cast<float>(1 / bc1), static_cast<float>(1 / bc2),
                                    static_cast<float>(eps), static_cast<float>(wd[t]), static_cast<float>(lr)});
        const int64_t n = static_cast<int64_t>(ref.p[t].size()), chunks = k::optim_chunks(n);
        if (n == 0) continue;  // as the launcher: an empty tensor is not updated
        std::vector<double> sums(2 * chunks);
        float scale = 0;
        launch({2, 1}, {k::kOptimThreads, 1}, [&] {
          k::lamb_moments(ref.p[t].data(), ref.g[t].data(), ref.m[t].data(), ref.v[t].data(), n, steps[t], sums.data());
        });
        launch({1, 1}, {k::kOptimThreads, 1}, [&] { k::lamb_trust_ratio(sums.data(), chunks, steps[t].lr, &scale); });
        launch({5, 1}, {64, 1}, [&] { k::lamb_apply(ref.p[t].data(), ref.m[t].data(), ref.v[t].data(), n, steps[t], &scale); });
      }
      int64_t all_chunks = 0;
      for (const auto& p : got.p) all_chunks += k::optim_chunks(static_cast<int64_t>(p.size()));
      std::vector<double> sums(2 * all_chunks, std::nan(""));
      std::vector<float> scales(count, std::nanf(""));
      const auto fill = [&](k::LambTable& tab, int j, int64_t t) {
        tab.ptr[0][j] = got.p[t].data(), tab.ptr[1][j] = got.g[t].data();
        tab.ptr[2][j] = got.m[t].data(), tab.ptr[3][j] = got.v[t].data();
        tab.numel[j] = static_cast<int64_t>(got.p[t].size());
        tab.step[j] = steps[t];
      };
      k::for_each_table<k::LambTable>(static_cast<int64_t>(count), fill, [&](const k::LambTable& tab, int64_t chunks) {
        const float* flag = per_table == 2 ? &no_overflow : nullptr;
        launch({static_cast<int>(chunks), 1}, {k::kOptimThreads, 1}, [&] { k::lamb_moments_multi(tab, sums.data(), flag); });
        launch({tab.count, 1}, {k::kOptimThreads, 1}, [&] { k::lamb_trust_ratio_multi(tab, sums.data(), scales.data(), flag); });
        launch({static_cast<int>(chunks), 1}, {k::kOptimThreads, 1}, [&] { k::lamb_apply_multi(tab, scales.data(), flag); });
        launches += 3;
      }, per_table);
    }
    // 6 tensors: one table, or 3 tables of 2.
    const int want = 2 * 3 * (per_table == 2 ? 3 : 1);
    check(same_bits(ref, got) && launches == want,
          "lamb_update_multi = lamb_update per tensor, bit for bit (" + std::to_string(per_table) +
              " tensors per table, " + std::to_string(launches / 2) + " launches per step, 2 steps)");
  }
}

// Dynamic loss scaling: the unscale pass (exact for a power-of-two scale,
// the flag set by inf or NaN in any tensor of any table, never cleared), and
// the multi-tensor updates with the flag set change nothing, bit for bit.
void test_loss_scaling() {
  namespace k = vl::cuda::kernels;
  const MultiCase start = multi_case(31);
  const size_t count = start.p.size();
  const float inv_scale = 1.0f / 1024.0f;
  struct Bad {
    size_t tensor;
    int64_t index;
    float value;
    const char* what;
  };
  const float inf = std::numeric_limits<float>::infinity();
  for (int per_table : {k::UnscaleTable::kMax, 2})
    for (const Bad& bad : {Bad{0, 0, 0.0f, "finite"}, Bad{5, 3 * k::kOptimChunk + 70, inf, "inf in the last tensor"},
                           Bad{3, k::kOptimChunk, -std::nanf(""), "NaN alone in a chunk"}}) {
      MultiCase got = start;
      if (bad.value != 0.0f) got.g[bad.tensor][bad.index] = bad.value;
      float found_inf = 0.0f;
      const auto fill = [&](k::UnscaleTable& tab, int j, int64_t t) {
        tab.ptr[0][j] = got.g[t].data();
        tab.numel[j] = static_cast<int64_t>(got.g[t].size());
      };
      k::for_each_table<k::UnscaleTable>(static_cast<int64_t>(count), fill, [&](const k::UnscaleTable& tab, int64_t chunks) {
        launch({static_cast<int>(chunks), 1}, {k::kOptimThreads, 1}, [&] { k::unscale_multi(tab, inv_scale, &found_inf); });
      }, per_table);
      bool scaled = true;
      for (size_t t = 0; t < count; ++t)
        for (size_t i = 0; i < got.g[t].size(); ++i) {
          if (bad.value != 0.0f && t == bad.tensor && static_cast<int64_t>(i) == bad.index) continue;
          const float want = start.g[t][i] * inv_scale;
          scaled &= std::memcmp(&want, &got.g[t][i], 4) == 0;
        }
      const float want_flag = bad.value != 0.0f ? 1.0f : 0.0f;
      check(scaled && found_inf == want_flag, std::string("unscale_multi: ") + bad.what + " (" +
                                                  std::to_string(per_table) + " tensors per table): g / 1024 exactly, flag " +
                                                  (want_flag != 0.0f ? "set" : "clear"));
    }

  // The updates with the flag set: params, state and gradients as they were.
  const float overflow = 1.0f;
  const auto unchanged = [&](const MultiCase& got) {
    bool same = same_bits(start, got);
    for (size_t t = 0; t < count; ++t) same &= std::memcmp(start.g[t].data(), got.g[t].data(), 4 * got.g[t].size()) == 0;
    return same;
  };
  {
    MultiCase got = start;
    const auto fill = [&](k::AdamWTable& tab, int j, int64_t t) {
      tab.ptr[0][j] = got.p[t].data(), tab.ptr[1][j] = got.g[t].data();
      tab.ptr[2][j] = got.m[t].data(), tab.ptr[3][j] = got.v[t].data();
      tab.numel[j] = static_cast<int64_t>(got.p[t].size());
      tab.step[j] = k::AdamWStep{0.999f, 0.1f, 0.999f, 0.001f, -0.1f, 0.03f, 1e-8f};
    };
    k::for_each_table<k::AdamWTable>(static_cast<int64_t>(count), fill, [&](const k::AdamWTable& tab, int64_t chunks) {
      launch({static_cast<int>(chunks), 1}, {k::kOptimThreads, 1}, [&] { k::adamw_update_multi<true>(tab, &overflow); });
    }, 2);
    check(unchanged(got), "adamw_update_multi with found_inf set changes nothing");
  }
  {
    MultiCase got = start;
    const auto fill = [&](k::SgdTable& tab, int j, int64_t t) {
      tab.ptr[0][j] = got.p[t].data(), tab.ptr[1][j] = got.g[t].data(), tab.ptr[2][j] = got.m[t].data();
      tab.numel[j] = static_cast<int64_t>(got.p[t].size());
      tab.step[j] = k::SgdStep{-0.1f, 0.9f, 1.0f, 0.05f, true, false};
    };
    k::for_each_table<k::SgdTable>(static_cast<int64_t>(count), fill, [&](const k::SgdTable& tab, int64_t chunks) {
      launch({static_cast<int>(chunks), 1}, {k::kOptimThreads, 1}, [&] { k::sgd_update_multi(tab, &overflow); });
    });
    check(unchanged(got), "sgd_update_multi with found_inf set changes nothing");
  }
  {
    MultiCase got = start;
    int64_t all_chunks = 0;
    for (const auto& p : got.p) all_chunks += k::optim_chunks(static_cast<int64_t>(p.size()));
    std::vector<double> sums(2 * all_chunks, 0.0);
    std::vector<float> scales(count, 0.0f);
    const auto fill = [&](k::LambTable& tab, int j, int64_t t) {
      tab.ptr[0][j] = got.p[t].data(), tab.ptr[1][j] = got.g[t].data();
      tab.ptr[2][j] = got.m[t].data(), tab.ptr[3][j] = got.v[t].data();
      tab.numel[j] = static_cast<int64_t>(got.p[t].size());
      tab.step[j] = k::LambStep{0.9f, 0.1f, 0.999f, 0.001f, 10.0f, 1000.0f, 1e-6f, 0.05f, 0.01f};
    };
    k::for_each_table<k::LambTable>(static_cast<int64_t>(count), fill, [&](const k::LambTable& tab, int64_t chunks) {
      launch({static_cast<int>(chunks), 1}, {k::kOptimThreads, 1}, [&] { k::lamb_moments_multi(tab, sums.data(), &overflow); });
      launch({tab.count, 1}, {k::kOptimThreads, 1}, [&] { k::lamb_trust_ratio_multi(tab, sums.data(), scales.data(), &overflow); });
      launch({static_cast<int>(chunks), 1}, {k::kOptimThreads, 1}, [&] { k::lamb_apply_multi(tab, scales.data(), &overflow); });
    });
    bool untouched = unchanged(got);
    for (double x : sums) untouched &= x == 0.0;
    for (float x : scales) untouched &= x == 0.0f;
    check(untouched, "lamb_update_multi with found_inf set changes nothing (no partials or trust ratios written)");
  }
}

int main() {
  test_runner();
  test_softmax();
  test_layer_norm();
  test_activations();
  test_cross_entropy<int32_t>("i32");
  test_cross_entropy<int64_t>("i64");
  test_soft_targets_and_bce();
  test_adamw();
  test_sgd();
  test_lamb_and_sum_of_squares();
  test_multi_tensor();
  test_loss_scaling();
  test_inplace_helpers();
  test_binary();
  test_sum();
  test_copy();
  test_copy_into_and_windows();
  return vl::simt_test::finish();
}
