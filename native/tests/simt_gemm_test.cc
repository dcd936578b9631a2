// The GEMM kernels of native/cuda/kernels on the CPU, through the SIMT runner,
// against plain double-precision references, and the runner's cp.async
// mechanics they rely on. Built and run by test/simt.test.ts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "core/half.h"
#include "cuda/kernels/gemm.cuh"
#include "cuda/kernels/gemm_mma.cuh"
#include "cuda/kernels/gemm_wgmma.cuh"
#include "ops/linalg.h"
#include "tests/simt_check.h"
#include "tests/simt_runner.h"

using vl::simt::Dim;
using vl::simt::launch;
using vl::simt_test::check;
namespace g = vl::cuda::kernels::gemm;

namespace {

std::mt19937 rng(11);

std::vector<float> random_f32(size_t n) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

float round_bf16(float x) { return vl::bf16_to_f32(vl::f32_to_bf16(x)); }
float round_f16(float x) { return vl::f16_to_f32(vl::f32_to_f16(x)); }

// An operand as the kernel multiplies it: exact in the 3-pass split, else
// rounded to the format of the 1-pass products.
template <int kPasses, typename Ops>
double operand(float x) {
  if (kPasses == 3) return x;
  return std::is_same<Ops, vl::simt::F16Ops>::value ? round_f16(x) : round_bf16(x);
}
template <int kPasses, typename Ops>
std::string arith_name() {
  if (kPasses == 3) return "3 passes";
  return std::is_same<Ops, vl::simt::F16Ops>::value ? "1 f16 pass" : "1 bf16 pass";
}

std::string dims(int M, int N, int K) { return std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K); }

void test_gemm_mma() {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const int shapes[][3] = {{16, 8, 16}, {32, 16, 16}, {33, 17, 40}, {64, 48, 96}, {5, 3, 7}};
  for (const auto& s : shapes) {
    const int M = s[0], N = s[1], K = s[2];
    std::vector<uint16_t> a(M * K), b(N * K);
    for (auto& v : a) v = vl::f32_to_bf16(dist(rng));
    for (auto& v : b) v = vl::f32_to_bf16(dist(rng));
    std::vector<float> c(M * N, -7.0f);
    const Dim grid{(N + vl::cuda::kernels::kMmaTileN - 1) / vl::cuda::kernels::kMmaTileN,
                   (M + vl::cuda::kernels::kMmaTileM - 1) / vl::cuda::kernels::kMmaTileM};
    launch(grid, {vl::cuda::kernels::kMmaThreads, 1}, [&] { vl::cuda::kernels::gemm_bf16_mma(a.data(), b.data(), c.data(), M, N, K); });
    double worst = 0;
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) {
        double ref = 0;
        for (int k = 0; k < K; ++k) ref += static_cast<double>(vl::bf16_to_f32(a[i * K + k])) * vl::bf16_to_f32(b[j * K + k]);
        worst = vl::simt_test::worse(worst, std::fabs(c[i * N + j] - ref));
      }
    check(worst < 1e-4, "gemm_bf16_mma " + dims(M, N, K) + " matches the reference (max error " + std::to_string(worst) + ")");
  }
}

// ---- runner mechanics of the pipeline primitives ----

void test_cp_async() {
  alignas(16) float src[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  bool landed_early = true, partial_ok = false, order_ok = false;
  launch({1, 1}, {32, 1}, [&] {
    float* s = reinterpret_cast<float*>(vl::simt::dynamic_shared());
    if (vl::simt::thread_x() != 0) return;
    vl::simt::cp_async_16(s, src, 16);
    vl::simt::cp_async_commit();
    vl::simt::cp_async_16(s + 4, src + 4, 6);  // 1.5 floats, the rest zero-filled
    vl::simt::cp_async_commit();
    vl::simt::cp_async_16(s + 8, src, 16);  // not committed: wait_group does not cover it
    vl::simt::cp_async_wait<1>();
    landed_early = !std::isnan(s[4]) || !std::isnan(s[8]);
    order_ok = s[0] == 1 && s[3] == 4;
    vl::simt::cp_async_wait<0>();
    // Bytes 4-5 of the copy are the low half of 6.0f (little-endian), bytes 6-15 zero.
    partial_ok = s[4] == 5 && vl::f32_bits(s[5]) == (vl::f32_bits(6.0f) & 0xffffu) && s[6] == 0 && s[7] == 0 && std::isnan(s[8]);
  });
  check(order_ok && !landed_early, "cp_async_wait<1> lands the older group only (the newer one and uncommitted copies stay in flight)");
  check(partial_ok, "cp_async_16 copies src_bytes and zero-fills the rest of the 16 bytes");
  bool threw = false;
  try {
    launch({1, 1}, {32, 1}, [&] { vl::simt::cp_async_16(vl::simt::dynamic_shared() + 4, src, 16); });
  } catch (const std::exception& e) {
    threw = std::string(e.what()).find("16-byte aligned") != std::string::npos;
  }
  check(threw, "cp_async_16 to a misaligned shared address is an error");
  bool fresh = true;
  launch({2, 1}, {32, 1}, [&] {
    unsigned char* s = vl::simt::dynamic_shared();
    if (vl::simt::thread_x() != 0) return;
    fresh = fresh && s[100] == 0xff;
    s[100] = 0;  // the next block must not see it
  });
  check(fresh, "dynamic shared memory starts as NaN bytes in every block");
  const uint32_t p = vl::simt::pack_bf16x2(1.00390625f, -3.0f);  // 1 + 2^-8 ties to even: 1.0
  check((p & 0xffffu) == vl::f32_to_bf16(1.0f) && (p >> 16) == vl::f32_to_bf16(-3.0f),
        "pack_bf16x2 rounds to nearest even, first value in the low half");
  // 1 + 2^-11 ties to even (1.0); 65519 rounds down to 65504, 65520 up to Inf.
  const uint32_t h1 = vl::simt::pack_f16x2(1.00048828125f, -3.0f), h2 = vl::simt::pack_f16x2(65519.0f, -65520.0f);
  check(h1 == (0x3c00u | 0xc200u << 16) && h2 == (0x7bffu | 0xfc00u << 16),
        "pack_f16x2 rounds to nearest even, overflows to Inf, first value in the low half");
}

// mma_f16 reads fp16 bits (1.5 * 2 over k = 16: 48) and propagates an
// operand that overflowed fp16 as Inf.
void test_mma_f16() {
  float plain[4] = {}, inf[4] = {};
  launch({1, 1}, {32, 1}, [&] {
    const uint32_t a = vl::simt::pack_f16x2(1.5f, 1.5f), b = vl::simt::pack_f16x2(2.0f, 2.0f);
    const uint32_t af[4] = {a, a, a, a}, bf[2] = {b, b};
    float acc[4] = {1, 1, 1, 1};
    vl::simt::mma_f16_m16n8k16(acc, af, bf);
    if (vl::simt::lane() == 0) std::memcpy(plain, acc, sizeof acc);
    const uint32_t big[4] = {vl::simt::pack_f16x2(7e4f, 1.0f), a, a, a};
    float acc2[4] = {};
    vl::simt::mma_f16_m16n8k16(acc2, big, bf);
    if (vl::simt::lane() == 0) std::memcpy(inf, acc2, sizeof acc2);
  });
  check(plain[0] == 49 && plain[1] == 49 && plain[2] == 49 && plain[3] == 49, "mma_f16_m16n8k16: fp16 operands, f32 accumulation");
  // Lane 0 holds A row 0 (the 7e4 at k = 0) in acc 0-1, row 8 in acc 2-3.
  check(std::isinf(inf[0]) && inf[0] > 0 && std::isinf(inf[1]) && inf[2] == 48, "mma_f16_m16n8k16: an operand beyond 65504 is Inf");
}

// ---- the pipelined GEMM ----

// Accuracy of the 3-pass split against exact f32 products: each product
// misses lo*lo and the rounding of lo, at most 3 * 2^-18 of |a b|, so 2e-5 of
// sum |a b| bounds it with f32 accumulation on top. The 1-pass variants are
// compared with references on the bf16-rounded operands (exact products),
// where only f32 accumulation remains.
constexpr double kSplitTol = 2e-5, kBf16Tol = 1e-5;

// C = A B^T with A [batches][M][lda], B [N][ldb] (f32, or bf16 bits), C
// [batches][M][ldc]; what the launchers of cuda/linalg.cu set up.
template <typename TA, typename TB, int kPasses, bool kSwiGLU, bool kAsync, typename Ops = vl::simt::Bf16Ops, typename ASrc>
void run_gemm(g::Params<TA, TB, ASrc> p, int64_t batches) {
  p.m_tiles = (p.M + g::kBM - 1) / g::kBM;
  p.n_tiles = (p.N + g::kBN - 1) / g::kBN;
  static_assert(g::kSmemBytes<TA, TB> <= vl::simt::kMaxDynamicShared, "fits the largest shared memory");
  launch({static_cast<int>(g::grid_blocks(p, batches)), 1}, {g::kThreads, 1},
         [&] { g::gemm_kernel<TA, TB, kPasses, kSwiGLU, kAsync, ASrc, Ops>(p); });
}

// The Hopper kernel on the same Params (16-byte aligned rows, one batch),
// its TMA descriptors made as cuda/linalg_sm90.cu makes them.
template <int kPasses, bool kSwiGLU, typename Ops>
void run_wgmma(g::Params<float, uint16_t, g::Rows> p) {
  constexpr int bn = g::kWgBN<kPasses>;
  p.m_tiles = (p.M + g::kWgBM - 1) / g::kWgBM;
  p.n_tiles = (p.N + bn - 1) / bn;
  static_assert(g::kWgSmemBytes <= vl::simt::kMaxDynamicShared, "fits the largest shared memory");
  g::WgmmaParams w;
  w.p = p;
  const std::string why = g::make_wgmma_maps<kPasses>(w);
  if (!why.empty()) throw std::runtime_error("make_wgmma_maps: " + why);
  launch({static_cast<int>(g::grid_blocks(p, 1)), 1}, {g::kWgThreads, 1},
         [&] { g::gemm_wgmma_kernel<kPasses, kSwiGLU, Ops>(w); });
}

// f32 B rows on the Hopper kernel as cuda/linalg_sm90.cu runs them: B packed
// into 16-bit rows (hi and lo planes for 3 passes), then the wgmma GEMM.
template <int kPasses, bool kSwiGLU, typename Ops>
void run_wgmma_f32(const g::Params<float, float, g::Rows>& p) {
  const int kpad = static_cast<int>(vl::ops::cuda_packed_kpad(p.b_k));
  const int64_t plane = static_cast<int64_t>(p.N) * kpad;
  std::vector<uint16_t> b16(static_cast<size_t>(plane * (kPasses == 3 ? 2 : 1)));
  const int64_t ld = p.b_src.ld;
  launch({3, 1}, {64, 1}, [&] {
    g::pack_weight_rows<uint16_t, Ops, kPasses == 3>(p.b, p.b, ld, ld, 1, p.N, p.b_k, p.N, kpad, false, b16.data());
  });
  run_wgmma<kPasses, kSwiGLU, Ops>(g::with_b(p, static_cast<const uint16_t*>(b16.data()), kpad, kpad));
}

// max |c - ref| / (sum |terms| + |additive terms|), over every output.
struct Worst {
  double err = 0;
  bool finite = true;
  void add(double c, double ref, double mag) {
    finite = finite && std::isfinite(c);
    err = vl::simt_test::worse(err, std::fabs(c - ref) / std::max(mag, 1e-30));
  }
  std::string str() const { return "relative error " + std::to_string(err); }
};

// Packs w [n, k] (row stride s0) like cuda/linalg.cu does, through the
// runner; 16-bit values in the format of Ops.
template <typename TB, typename Ops = vl::simt::Bf16Ops>
std::vector<TB> pack(const float* w1, const float* w2, int n, int k, int64_t s0, bool swiglu, int64_t& rows, int& kpad) {
  kpad = (k + 15) / 16 * 16;
  rows = swiglu ? 2 * ((n + 7) / 8 * 8) : n;
  std::vector<TB> out(static_cast<size_t>(rows * kpad));
  launch({3, 1}, {64, 1}, [&] { g::pack_weight_rows<TB, Ops>(w1, w2, s0, s0, 1, n, k, rows, kpad, swiglu, out.data()); });
  return out;
}

// f32 x f32 (3 passes or 1), f32 x packed bf16, and bf16 x bf16, with bias
// and residual, over shapes with ragged M, N and K (lda padded so cp.async
// applies, or not so the plain loads do). kWgmma: on the Hopper kernel.
template <int kPasses, bool kAsync, typename Ops = vl::simt::Bf16Ops, bool kWgmma = false>
void test_f32(int M, int N, int K, int lda, bool bias_res) {
  static_assert(kAsync || !kWgmma, "the wgmma kernel takes 16-byte aligned rows (TMA)");
  const double tol = kPasses == 3 ? kSplitTol : kBf16Tol;
  const std::vector<float> a = random_f32(static_cast<size_t>(M) * lda), b = random_f32(static_cast<size_t>(N) * lda);
  const std::vector<float> bias = random_f32(N), res = random_f32(static_cast<size_t>(M) * N);
  std::vector<float> c(static_cast<size_t>(M) * N, -7.0f);
  g::Params<float, float, g::Rows> p;
  p.a = a.data();
  p.a_src.ld = lda;
  p.b = b.data();
  p.b_src.ld = lda;
  p.c = c.data();
  p.ldc = N;
  p.bias = bias_res ? bias.data() : nullptr;
  p.residual = bias_res ? res.data() : nullptr;
  p.M = M, p.N = N, p.K = K, p.b_k = K, p.out_n = N;
  if (kWgmma)
    run_wgmma_f32<kPasses, false, Ops>(p);
  else
    run_gemm<float, float, kPasses, false, kAsync, Ops>(p, 1);
  Worst w;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double ref = 0, mag = 0;
      for (int k = 0; k < K; ++k) {
        const double x = operand<kPasses, Ops>(a[i * lda + k]);
        const double y = operand<kPasses, Ops>(b[j * lda + k]);
        ref += x * y;
        mag += std::fabs(x * y);
      }
      if (bias_res) ref += bias[j] + res[i * N + j], mag += std::fabs(bias[j]) + std::fabs(res[i * N + j]);
      w.add(c[i * N + j], ref, mag);
    }
  check(w.finite && w.err < tol, "gemm f32 x f32, " + arith_name<kPasses, Ops>() +
                                     (kWgmma ? ", wgmma" : kAsync ? ", cp.async" : ", plain loads") + (bias_res ? ", bias + residual, " : ", ") +
                                     dims(M, N, K) + " lda " + std::to_string(lda) + ": " + w.str());
}

// A rows of lda floats: a multiple of 4 for cp.async, any for plain loads.
// Packed bf16 weights, or fp16 ones with F16Ops (A rounded to fp16 as well).
// kWgmma: the Hopper kernel (wgmma) instead of gemm_kernel (mma.sync).
template <bool kAsync, typename Ops = vl::simt::Bf16Ops, bool kWgmma = false>
void test_f32_packed16(int M, int N, int K, int lda, bool swiglu) {
  static_assert(kAsync || !kWgmma, "the wgmma kernel takes 16-byte aligned rows (TMA)");
  const std::vector<float> a = random_f32(static_cast<size_t>(M) * lda);
  const std::vector<float> w1 = random_f32(static_cast<size_t>(N) * K), w2 = random_f32(static_cast<size_t>(N) * K);
  const std::vector<float> bias = random_f32(N), res = random_f32(static_cast<size_t>(M) * N);
  int64_t rows;
  int kpad;
  const std::vector<uint16_t> packed = pack<uint16_t, Ops>(w1.data(), w2.data(), N, K, K, swiglu, rows, kpad);
  std::vector<float> c(static_cast<size_t>(M) * N, -7.0f);
  g::Params<float, uint16_t, g::Rows> p;
  p.a = a.data();
  p.a_src.ld = lda;
  p.b = packed.data();
  p.b_src.ld = kpad;
  p.c = c.data();
  p.ldc = N;
  p.bias = swiglu ? nullptr : bias.data();
  p.residual = res.data();
  p.M = M, p.N = static_cast<int>(rows), p.K = K, p.b_k = kpad, p.out_n = N;
  if (kWgmma && swiglu)
    run_wgmma<1, true, Ops>(p);
  else if (kWgmma)
    run_wgmma<1, false, Ops>(p);
  else if (swiglu)
    run_gemm<float, uint16_t, 1, true, kAsync, Ops>(p, 1);
  else
    run_gemm<float, uint16_t, 1, false, kAsync, Ops>(p, 1);
  Worst w;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double r1 = 0, r2 = 0, m1 = 0, m2 = 0;
      for (int k = 0; k < K; ++k) {
        const double x = operand<1, Ops>(a[i * lda + k]), y1 = operand<1, Ops>(w1[j * K + k]),
                     y2 = operand<1, Ops>(w2[j * K + k]);
        r1 += x * y1, m1 += std::fabs(x * y1);
        r2 += x * y2, m2 += std::fabs(x * y2);
      }
      const double r = res[i * N + j];
      if (swiglu)
        w.add(c[i * N + j], r1 / (1 + std::exp(-r1)) * r2 + r, 2.1 * m1 * m2 + std::fabs(r));
      else
        w.add(c[i * N + j], r1 + bias[j] + r, m1 + std::fabs(bias[j]) + std::fabs(r));
    }
  check(w.finite && w.err < kBf16Tol, std::string(swiglu ? "SwiGLU dual GEMM (silu(a W1^T) * a W2^T + residual)" : "gemm + bias + residual") +
                                      ", f32 x packed " + (std::is_same<Ops, vl::simt::F16Ops>::value ? "f16" : "bf16") +
                                      " (1 pass" + (kWgmma ? ", wgmma), " : kAsync ? ", cp.async), " : ", plain loads), ") + dims(M, N, K) + ": " + w.str());
}

// K = 36: A rows stay 16-byte aligned, the packed W rows are padded to 48.
// kWgmma: the packed f32 rows on the Hopper kernel (the split, as linalg.cu runs them there).
template <bool kWgmma = false>
void test_swiglu_f32(int M, int H, int K) {
  const std::vector<float> a = random_f32(static_cast<size_t>(M) * K);
  const std::vector<float> w1 = random_f32(static_cast<size_t>(H) * K), w2 = random_f32(static_cast<size_t>(H) * K);
  int64_t rows;
  int kpad;
  const std::vector<float> packed = pack<float>(w1.data(), w2.data(), H, K, K, true, rows, kpad);
  std::vector<float> c(static_cast<size_t>(M) * H, -7.0f);
  g::Params<float, float, g::Rows> p;
  p.a = a.data();
  p.a_src.ld = K;
  p.b = packed.data();
  p.b_src.ld = kpad;
  p.c = c.data();
  p.ldc = H;
  p.M = M, p.N = static_cast<int>(rows), p.K = K, p.b_k = kpad, p.out_n = H;
  if (kWgmma)
    run_wgmma_f32<3, true, vl::simt::Bf16Ops>(p);
  else
    run_gemm<float, float, 3, true, true>(p, 1);
  Worst w;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < H; ++j) {
      double r1 = 0, r2 = 0, m1 = 0, m2 = 0;
      for (int k = 0; k < K; ++k) {
        r1 += static_cast<double>(a[i * K + k]) * w1[j * K + k], m1 += std::fabs(static_cast<double>(a[i * K + k]) * w1[j * K + k]);
        r2 += static_cast<double>(a[i * K + k]) * w2[j * K + k], m2 += std::fabs(static_cast<double>(a[i * K + k]) * w2[j * K + k]);
      }
      w.add(c[i * H + j], r1 / (1 + std::exp(-r1)) * r2, 2.1 * m1 * m2);
    }
  check(w.finite && w.err < kSplitTol, std::string("SwiGLU dual GEMM, f32 x packed f32 (3 passes") + (kWgmma ? ", wgmma), " : "), ") +
                                           dims(M, H, K) + ": " + w.str());
}

void test_bf16_bf16(int M, int N, int K) {
  std::vector<uint16_t> a(static_cast<size_t>(M) * K), b(static_cast<size_t>(N) * K);
  for (auto& v : a) v = vl::f32_to_bf16(random_f32(1)[0]);
  for (auto& v : b) v = vl::f32_to_bf16(random_f32(1)[0]);
  std::vector<float> c(static_cast<size_t>(M) * N, -7.0f);
  g::Params<uint16_t, uint16_t, g::Rows> p;
  p.a = a.data();
  p.a_src.ld = K;
  p.b = b.data();
  p.b_src.ld = K;
  p.c = c.data();
  p.ldc = N;
  p.M = M, p.N = N, p.K = K, p.b_k = K, p.out_n = N;
  run_gemm<uint16_t, uint16_t, 1, false, true>(p, 1);
  Worst w;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double ref = 0, mag = 0;
      for (int k = 0; k < K; ++k) {
        const double x = vl::bf16_to_f32(a[i * K + k]) * static_cast<double>(vl::bf16_to_f32(b[j * K + k]));
        ref += x, mag += std::fabs(x);
      }
      w.add(c[i * N + j], ref, mag);
    }
  check(w.finite && w.err < kBf16Tol, "gemm bf16 x bf16 (natural k order), " + dims(M, N, K) + ": " + w.str());
}

// Batch dims [2, 3]: A differs in both, B is broadcast over the second (stride 0).
template <int kPasses, typename Ops = vl::simt::Bf16Ops>
void test_batched() {
  const int M = 21, N = 19, K = 24, B0 = 2, B1 = 3;
  const std::vector<float> a = random_f32(static_cast<size_t>(B0) * B1 * M * K), b = random_f32(static_cast<size_t>(B0) * N * K);
  std::vector<float> c(static_cast<size_t>(B0) * B1 * M * N, -7.0f);
  g::Params<float, float, g::Rows> p;
  p.a = a.data();
  p.a_src.ld = K;
  p.b = b.data();
  p.b_src.ld = K;
  p.c = c.data();
  p.ldc = N;
  p.M = M, p.N = N, p.K = K, p.b_k = K, p.out_n = N;
  p.batch.dims = 2;
  p.batch.shape[0] = B0, p.batch.shape[1] = B1;
  p.batch.a[0] = static_cast<int64_t>(B1) * M * K, p.batch.a[1] = static_cast<int64_t>(M) * K;
  p.batch.b[0] = static_cast<int64_t>(N) * K, p.batch.b[1] = 0;
  p.batch.c = static_cast<int64_t>(M) * N;
  run_gemm<float, float, kPasses, false, true, Ops>(p, B0 * B1);
  Worst w;
  for (int z0 = 0; z0 < B0; ++z0)
    for (int z1 = 0; z1 < B1; ++z1)
      for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
          const float* ar = &a[((z0 * B1 + z1) * M + i) * K];
          const float* br = &b[(z0 * N + j) * K];
          double ref = 0, mag = 0;
          for (int k = 0; k < K; ++k) {
            const double t = operand<kPasses, Ops>(ar[k]) * operand<kPasses, Ops>(br[k]);
            ref += t, mag += std::fabs(t);
          }
          w.add(c[((z0 * B1 + z1) * M + i) * N + j], ref, mag);
        }
  check(w.finite && w.err < (kPasses == 3 ? kSplitTol : kBf16Tol),
        "batched gemm (" + arith_name<kPasses, Ops>() + "), batch [2, 3] with B broadcast over the second dim, " + dims(M, N, K) + ": " + w.str());
}

// conv_patch's A gathered from the image in the tile loads: x [B, C, H, W],
// w [O, C*p*p] -> [B, (H/p)*(W/p), O] + bias.
template <bool kAsync, int kPasses = 3, typename Ops = vl::simt::Bf16Ops>
void test_patches(int Bn, int C, int H, int W, int p_, int O) {
  const int gh = H / p_, gw = W / p_, M = Bn * gh * gw, K = C * p_ * p_;
  const std::vector<float> x = random_f32(static_cast<size_t>(Bn) * C * H * W), wt = random_f32(static_cast<size_t>(O) * K),
                           bias = random_f32(O);
  std::vector<float> c(static_cast<size_t>(M) * O, -7.0f);
  g::Params<float, float, g::Patches> p;
  p.a = x.data();
  p.a_src.sb = static_cast<int64_t>(C) * H * W, p.a_src.sc = static_cast<int64_t>(H) * W, p.a_src.sh = W, p.a_src.sw = 1;
  p.a_src.p = p_, p.a_src.gw = gw, p.a_src.cells = gh * gw;
  p.b = wt.data();
  p.b_src.ld = K;
  p.c = c.data();
  p.ldc = O;
  p.bias = bias.data();
  p.M = M, p.N = O, p.K = K, p.b_k = K, p.out_n = O;
  run_gemm<float, float, kPasses, false, kAsync, Ops>(p, 1);
  Worst w;
  for (int b = 0; b < Bn; ++b)
    for (int gy = 0; gy < gh; ++gy)
      for (int gx = 0; gx < gw; ++gx)
        for (int o = 0; o < O; ++o) {
          double ref = bias[o], mag = std::fabs(bias[o]);
          for (int ci = 0; ci < C; ++ci)
            for (int ky = 0; ky < p_; ++ky)
              for (int kx = 0; kx < p_; ++kx) {
                const double t = operand<kPasses, Ops>(x[((b * C + ci) * H + gy * p_ + ky) * W + gx * p_ + kx]) *
                                 operand<kPasses, Ops>(wt[o * K + (ci * p_ + ky) * p_ + kx]);
                ref += t, mag += std::fabs(t);
              }
          w.add(c[((b * gh + gy) * gw + gx) * O + o], ref, mag);
        }
  check(w.finite && w.err < (kPasses == 3 ? kSplitTol : kBf16Tol), "patch GEMM (" + arith_name<kPasses, Ops>() + ", A gathered from the image" + (kAsync ? ", cp.async" : ", plain loads") +
                                      "), x [" + std::to_string(Bn) + "," + std::to_string(C) + "," + std::to_string(H) + "," +
                                      std::to_string(W) + "] patch " + std::to_string(p_) + " -> " + std::to_string(O) + ": " + w.str());
}

// ---- TMA and mbarriers in the runner ----

// A TMA box of a 3-d bf16 tensor lands 128B-swizzled with zeros past the
// edges, only once the block cannot go on without it, and completes its
// bytes on the mbarrier whose phase a waiter names by parity; a
// 128B-swizzled wgmma descriptor reads the box as K-major B.
void test_tma() {
  const int d0 = 70, d1 = 9, d2 = 2, ld = 72;  // rows of 72 16-bit values, 9 rows per plane
  std::vector<uint16_t> t(static_cast<size_t>(ld) * d1 * d2);
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<uint16_t>(i * 7 + 1);
  vl::simt::TensorMapSpec spec;
  spec.base = t.data(), spec.elem_bytes = 2, spec.rank = 3;
  spec.dims[0] = d0, spec.dims[1] = d1, spec.dims[2] = d2;
  spec.strides[0] = ld * 2, spec.strides[1] = static_cast<uint64_t>(ld) * 2 * d1;
  spec.box[0] = 64, spec.box[1] = 16, spec.box[2] = 1;
  vl::simt::TensorMap map;
  check(vl::simt::encode_tensor_map(&map, spec).empty(), "encode_tensor_map takes a 3-d bf16 tensor with 128-byte box rows");
  const int c0 = 32, c1 = -3, c2 = 1;  // k 32..95 (past d0 from 70), rows -3..12 (outside 0..8 at both ends)
  std::vector<uint16_t> got(64 * 16);
  bool early = false, parity_ok = true;
  float acc_out[128] = {};
  launch({1, 1}, {128, 1}, [&] {
    unsigned char* smem = vl::simt::dynamic_shared();
    uint64_t* bar = reinterpret_cast<uint64_t*>(smem + 4096);
    const int tid = vl::simt::thread_x();
    if (tid == 0) vl::simt::mbarrier_init(bar, 1);
    vl::simt::sync_threads();
    // A fresh barrier's phase of parity 1 (the one before the first) counts as done.
    parity_ok = parity_ok && vl::simt::mbarrier_try_wait(bar, 1);
    if (tid == 0) {
      vl::simt::mbarrier_arrive_expect_tx(bar, 64 * 16 * 2);
      vl::simt::tma_load_3d(smem, &map, c0, c1, c2, bar);
      // Other threads still run: the box has not landed.
      early = early || reinterpret_cast<uint16_t*>(smem)[0] != 0xffff;
    }
    vl::simt::mbarrier_wait(bar, 0);
    if (tid == 0) std::memcpy(got.data(), smem, got.size() * 2);
    // The box as B of an m64n16k16 (rows = n, k 16..31 of each row): its second k16 slice.
    float acc[8] = {};
    uint32_t a[4];
    for (int i = 0; i < 4; ++i) a[i] = 0x3f803f80u;  // A = 1: acc = column sums of B over the slice
    vl::simt::wgmma_fence();
    vl::simt::wgmma_bf16<16>(acc, a, vl::simt::wgmma_desc_sw128(smem + 32));
    vl::simt::wgmma_commit();
    vl::simt::wgmma_wait<0>();
    if (tid == 0) std::memcpy(acc_out, acc, sizeof acc);
  });
  check(!early && parity_ok, "a TMA box lands only when the block waits for it; a fresh mbarrier's parity-1 phase is done");
  bool layout = true;
  const auto source = [&](int k, int row) -> uint16_t {
    const int g0 = c0 + k, g1 = c1 + row;
    return g0 < d0 && g1 >= 0 && g1 < d1 ? t[(static_cast<size_t>(c2) * d1 + g1) * ld + g0] : 0;
  };
  for (int row = 0; row < 16; ++row)
    for (int k = 0; k < 64; ++k) {
      const int chunk = (k / 8) ^ (row % 8);
      layout = layout && got[row * 64 + chunk * 8 + k % 8] == source(k, row);
    }
  check(layout, "a TMA box: 16-byte chunk c of row r at chunk c ^ r%8 of its 128-byte row, zero past the tensor's edges");
  // Lane 0 holds columns (n) 0, 1 of rows 0 and 8 of A: the sums over k 16..31 of B rows n.
  bool sums = true;
  for (int e = 0; e < 2; ++e) {
    float ref = 0;
    for (int k = 16; k < 32; ++k) ref += vl::bf16_to_f32(source(k, e));
    sums = sums && acc_out[e] == ref;
  }
  check(sums, "a 128B-swizzled wgmma descriptor reads a TMA box as K-major B (a k16 slice 32 bytes further)");

  const auto error = [](const std::function<void(unsigned char*, uint64_t*, int)>& body) {
    try {
      launch({1, 1}, {32, 1}, [&] {
        unsigned char* smem = vl::simt::dynamic_shared();
        uint64_t* bar = reinterpret_cast<uint64_t*>(smem + 65536);
        if (vl::simt::thread_x() == 0) vl::simt::mbarrier_init(bar, 1);
        vl::simt::sync_threads();
        body(smem, bar, vl::simt::thread_x());
      });
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const auto has = [](const std::string& e, const char* what) { return e.find(what) != std::string::npos; };
  std::string e = error([&](unsigned char* smem, uint64_t* bar, int tid) {
    if (tid == 0) vl::simt::mbarrier_arrive_expect_tx(bar, 64 * 16 * 2), vl::simt::tma_load_3d(smem + 512, &map, 0, 0, 0, bar);
    vl::simt::mbarrier_wait(bar, 0);
  });
  check(has(e, "not 1024-byte aligned"), "TMA into shared memory off the swizzle's 1024-byte period is an error (" + e + ")");
  e = error([&](unsigned char* smem, uint64_t* bar, int tid) {
    if (tid == 0) vl::simt::mbarrier_arrive_expect_tx(bar, 64 * 16 * 2 + 16), vl::simt::tma_load_3d(smem, &map, 0, 0, 0, bar);
    vl::simt::mbarrier_wait(bar, 0);
  });
  check(has(e, "deadlock"), "waiting on a phase that expects more bytes than its copies bring is a deadlock (" + e + ")");
  e = error([&](unsigned char* smem, uint64_t* bar, int tid) {
    if (tid == 0) vl::simt::mbarrier_arrive_expect_tx(bar, 64 * 16 * 2 - 16), vl::simt::tma_load_3d(smem, &map, 0, 0, 0, bar);
    vl::simt::mbarrier_wait(bar, 0);
  });
  check(has(e, "more bytes"), "a copy bringing more bytes than its phase expects is an error (" + e + ")");
  e = error([&](unsigned char*, uint64_t* bar, int tid) {
    // Thread 0's arrival leaves the phase waiting for bytes only; thread 1's is one too many.
    if (tid == 0) vl::simt::mbarrier_arrive_expect_tx(bar, 16);
    if (tid == 1) vl::simt::mbarrier_arrive(bar);
  });
  check(has(e, "more arrivals"), "more arrivals in a phase than the barrier's count is an error (" + e + ")");
  e = error([&](unsigned char* smem, uint64_t* bar, int tid) {
    if (tid == 0) vl::simt::mbarrier_arrive_expect_tx(bar, 64 * 16 * 2), vl::simt::tma_load_3d(smem, &map, 0, 0, 0, bar);
  });
  check(has(e, "TMA copies in flight"), "a block that ends with a TMA copy in flight is an error (" + e + ")");
  // A bulk copy: bytes as they are, completed on the barrier like a box.
  bool bulk_ok = false;
  e = error([&](unsigned char* smem, uint64_t* bar, int tid) {
    if (tid == 0) vl::simt::mbarrier_arrive_expect_tx(bar, 96), vl::simt::bulk_load(smem + 48, t.data() + 8, 96, bar);
    vl::simt::mbarrier_wait(bar, 0);
    if (tid == 0) bulk_ok = std::memcmp(smem + 48, t.data() + 8, 96) == 0;
  });
  check(e == "no error" && bulk_ok, "bulk_load lands its bytes and completes them on the barrier (" + e + ")");
  e = error([&](unsigned char* smem, uint64_t* bar, int tid) {
    if (tid == 0) vl::simt::mbarrier_arrive_expect_tx(bar, 40), vl::simt::bulk_load(smem, t.data(), 40, bar);
    vl::simt::mbarrier_wait(bar, 0);
  });
  check(has(e, "multiple of 16 bytes"), "a bulk copy of a size that is not a multiple of 16 bytes is an error (" + e + ")");
  // Named barriers: warp 1 signals (arrive), warp 0 waits (sync) and sees what warp 1 wrote before.
  int seen = 0;
  std::string order = "no error";
  try {
    launch({1, 1}, {64, 1}, [&] {
      int* flag = reinterpret_cast<int*>(vl::simt::dynamic_shared());
      if (vl::simt::warp() == 1) {
        if (vl::simt::lane() == 0) *flag = 7;
        vl::simt::named_barrier_arrive<64>(3);
      } else {
        vl::simt::named_barrier_sync<64>(3);
        if (vl::simt::lane() == 0) seen = *flag;
      }
    });
  } catch (const std::exception& ex) {
    order = ex.what();
  }
  check(order == "no error" && seen == 7, "named_barrier_sync waits for the arrivals of named_barrier_arrive (" + order + ")");
  e = error([&](unsigned char*, uint64_t*, int tid) {
    if (tid < 16) vl::simt::named_barrier_arrive<32>(2);
  });
  check(has(e, "never completed"), "a block that ends with a named barrier short of its threads is an error (" + e + ")");
  spec.box[0] = 32;
  check(has(vl::simt::encode_tensor_map(&map, spec), "inner box of 64 bytes"), "encode_tensor_map refuses a box row the 128B swizzle does not fill");
  spec.box[0] = 64, spec.strides[0] = 70 * 2;
  check(has(vl::simt::encode_tensor_map(&map, spec), "stride of 140 bytes"), "encode_tensor_map refuses a stride that is not a multiple of 16 bytes");
}

// ---- wgmma in the runner ----

// wgmma m64nNk16 with N a run-time value (the wrappers take it as a template argument).
void wgmma_n(int n, bool f16, float* acc, const uint32_t a[4], uint64_t desc) {
  namespace s = vl::simt;
  switch (n) {
    case 32: return f16 ? s::wgmma_f16<32>(acc, a, desc) : s::wgmma_bf16<32>(acc, a, desc);
    case 96: return f16 ? s::wgmma_f16<96>(acc, a, desc) : s::wgmma_bf16<96>(acc, a, desc);
    case 256: return f16 ? s::wgmma_f16<256>(acc, a, desc) : s::wgmma_bf16<256>(acc, a, desc);
    default: throw std::runtime_error("wgmma_n: no test instance for N = " + std::to_string(n));
  }
}

// One m64nNk16 per warpgroup of a 256-thread block: A (64x16) in mma
// fragments, B (16xN) as no-swizzle core matrices in shared memory (n-block
// stride sbo = 256, k-block stride lbo = 128), written by cp.async and fenced.
// Checks the product, the deferral to wgmma_wait, and that wait<1> retires
// only the older of two groups.
void test_wgmma() {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const int N : {256, 96, 32})
  for (const bool f16 : {false, true}) {
    const int R = N / 2;  // accumulator registers per thread
    const auto bits = [&](float v) { return f16 ? vl::f32_to_f16(v) : vl::f32_to_bf16(v); };
    const auto value = [&](uint16_t b) { return f16 ? vl::f16_to_f32(b) : vl::bf16_to_f32(b); };
    std::vector<uint16_t> A(2 * 64 * 16), B(16 * N);  // A per warpgroup; B [k][n]
    for (auto& v : A) v = bits(dist(rng));
    for (auto& v : B) v = bits(dist(rng));
    // B's bytes in core-matrix order: (n/8, k/8) at (n/8)*256 + (k/8)*128, row n%8 at 16*(n%8).
    alignas(16) static uint16_t staged[16 * 256];
    for (int k = 0; k < 16; ++k)
      for (int n = 0; n < N; ++n) staged[((n / 8) * 256 + (k / 8) * 128 + (n % 8) * 16 + (k % 8) * 2) / 2] = B[k * N + n];
    std::vector<float> out(256 * R), before(256 * R), twice(256 * R);
    launch({1, 1}, {256, 1}, [&] {
      unsigned char* smem = vl::simt::dynamic_shared();
      const int tid = vl::simt::thread_x(), lane = vl::simt::lane(), wg = tid / 128, w = (tid / 32) % 4;
      for (int c = tid; c < 16 * N * 2 / 16; c += 256) vl::simt::cp_async_16(smem + 16 * c, staged + 8 * c, 16);
      vl::simt::cp_async_commit();
      vl::simt::cp_async_wait<0>();
      vl::simt::fence_proxy_async();
      vl::simt::sync_threads();
      const int g = lane / 4, t = lane % 4;
      uint32_t a[4];
      for (int i = 0; i < 4; ++i) {
        const int row = 16 * w + g + 8 * (i & 1), col = 2 * t + 8 * (i >> 1);
        const uint16_t* r = &A[(wg * 64 + row) * 16 + col];
        a[i] = r[0] | static_cast<uint32_t>(r[1]) << 16;
      }
      float acc[128], acc2[128];
      for (int i = 0; i < 128; ++i) acc[i] = 1.0f, acc2[i] = 0.0f;
      const uint64_t desc = vl::simt::wgmma_desc(smem, 128, 256);
      vl::simt::wgmma_fence();
      wgmma_n(N, f16, acc, a, desc);
      vl::simt::wgmma_commit();
      wgmma_n(N, f16, acc2, a, desc);
      wgmma_n(N, f16, acc2, a, desc);
      vl::simt::wgmma_commit();
      std::memcpy(&before[tid * R], acc, R * sizeof(float));
      vl::simt::wgmma_wait<1>();
      std::memcpy(&out[tid * R], acc, R * sizeof(float));
      const bool second_pending = acc2[0] == 0.0f;
      vl::simt::wgmma_wait<0>();
      std::memcpy(&twice[tid * R], acc2, R * sizeof(float));
      if (!second_pending) before[tid * R] = -1;  // reported below as not deferred
      // Registers past N/2 are not the product's.
      if (acc[R - 1] == 1.0f || (R < 128 && acc[R] != 1.0f)) before[tid * R] = -1;
    });
    Worst w;
    bool deferred = true, sums = true;
    for (int tid = 0; tid < 256; ++tid) {
      const int wg = tid / 128, wi = (tid / 32) % 4, lane = tid % 32, g = lane / 4, q = lane % 4;
      for (int i = 0; i < R; ++i) {
        const int row = 16 * wi + g + 8 * ((i >> 1) & 1), col = 8 * (i >> 2) + 2 * q + (i & 1);
        double ref = 0, mag = 0;
        for (int k = 0; k < 16; ++k) {
          const double x = static_cast<double>(value(A[(wg * 64 + row) * 16 + k])) * value(B[k * N + col]);
          ref += x, mag += std::fabs(x);
        }
        w.add(out[tid * R + i], 1.0 + ref, 1.0 + mag);
        deferred = deferred && before[tid * R + i] == 1.0f;
        sums = sums && std::fabs(twice[tid * R + i] - 2 * (out[tid * R + i] - 1.0f)) <= 1e-5f * (1 + 2 * mag);
      }
    }
    const std::string name = std::string("wgmma_") + (f16 ? "f16" : "bf16") + "<" + std::to_string(N) + ">";
    check(w.finite && w.err < 1e-6, name + " (m64n" + std::to_string(N) + "k16): A fragments x B core matrices in shared memory, both warpgroups: " + w.str());
    check(deferred, name + ": acc changes only at the wgmma_wait that retires its group; wait<1> leaves the newer group in flight");
    check(sums, name + ": two wgmmas of one group accumulate");
  }
}

// Misuses of wgmma the runner reports, as they are bugs on a GPU.
void test_wgmma_errors() {
  const auto error = [](int threads, const std::function<void(unsigned char*, int)>& body) {
    try {
      launch({1, 1}, {threads, 1}, [&] { body(vl::simt::dynamic_shared(), vl::simt::thread_x()); });
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  alignas(16) static uint16_t zeros[16 * 256] = {};
  const auto stage = [&](unsigned char* smem, int tid, bool fence) {
    for (int c = tid; c < 512; c += 128) vl::simt::cp_async_16(smem + 16 * c, zeros + 8 * c, 16);
    vl::simt::cp_async_commit();
    vl::simt::cp_async_wait<0>();
    if (fence) vl::simt::fence_proxy_async();
    vl::simt::sync_threads();
  };
  const uint32_t a[4] = {};
  const auto has = [](const std::string& e, const char* what) { return e.find(what) != std::string::npos; };
  // One m64n256k16 on the core matrices at `b`, committed, then waited for unless `wait` is false.
  const auto product = [&](const unsigned char* b, bool wait = true) {
    float acc[128] = {};
    vl::simt::wgmma_bf16<256>(acc, a, vl::simt::wgmma_desc(b, 128, 256));
    vl::simt::wgmma_commit();
    if (wait) vl::simt::wgmma_wait<0>();
  };
  std::string e = error(128, [&](unsigned char* smem, int tid) {
    stage(smem, tid, false);
    product(smem);
  });
  check(has(e, "without a following fence_proxy_async"), "wgmma on bytes a copy wrote without fence_proxy_async is an error (" + e + ")");
  e = error(128, [&](unsigned char* smem, int tid) {
    stage(smem, tid, true);
    // A register store into B (st.shared) after the fence: wgmma may not see it.
    if (tid == 5) reinterpret_cast<uint16_t*>(smem)[3 * 64 + 7] = 0x3f80;
    vl::simt::sync_threads();
    product(smem);
  });
  check(has(e, "stored to after the last fence_proxy_async"), "wgmma on bytes stored from registers after the last fence_proxy_async is an error (" + e + ")");
  e = error(128, [&](unsigned char* smem, int tid) {
    stage(smem, tid, true);
    product(smem + (tid >= 64 ? 16 : 0));
  });
  check(has(e, "descriptors of a warpgroup differ"), "wgmma with different descriptors in one warpgroup is an error (" + e + ")");
  e = error(128, [&](unsigned char* smem, int tid) {
    stage(smem, tid, true);
    product(smem, false);
  });
  check(has(e, "in flight"), "a kernel that returns with a wgmma not waited for is an error (" + e + ")");
  e = error(128, [&](unsigned char* smem, int tid) {
    stage(smem, tid, true);
    float acc[128] = {};
    if (tid < 64) vl::simt::wgmma_bf16<256>(acc, a, vl::simt::wgmma_desc(smem, 128, 256));
    vl::simt::wgmma_commit();
    vl::simt::wgmma_wait<0>();
  });
  check(has(e, "divergent warpgroup"), "a wgmma reached by half a warpgroup is an error (" + e + ")");
}

void test_pack_layout() {
  const int n = 11, k = 21;
  const std::vector<float> w1 = random_f32(static_cast<size_t>(n) * 30), w2 = random_f32(static_cast<size_t>(n) * 30);
  int64_t rows;
  int kpad;
  // Every packed value against W1/W2 (row stride 30: the pack reads through strides), converted by `round`.
  const auto matches = [&](const std::vector<uint16_t>& p, const std::vector<float>& a, uint16_t (*round)(float)) {
    bool ok = rows == 32 && kpad == 32;
    for (int64_t j = 0; ok && j < rows; ++j)
      for (int s = 0; s < kpad; ++s) {
        const int h = static_cast<int>((j / 16) * 8 + j % 8), kk = g::packed_k(s);
        const std::vector<float>& w = (j / 8) % 2 ? w2 : a;
        const uint16_t want = h < n && kk < k ? round(w[h * 30 + kk]) : 0;
        ok = ok && p[j * kpad + s] == want;
      }
    return ok;
  };
  check(matches(pack<uint16_t>(w1.data(), w2.data(), n, k, 30, true, rows, kpad), w1, vl::f32_to_bf16),
        "pack_weight_rows: SwiGLU rows interleaved by 8, bf16 k order packed_k, zero past H and K");
  // fp16 values (nearest even, Inf beyond 65504) in the same places.
  std::vector<float> big(w1);
  big[3] = 7e4f, big[4] = -65519.0f;
  check(matches(pack<uint16_t, vl::simt::F16Ops>(big.data(), w2.data(), n, k, 30, true, rows, kpad), big, vl::f32_to_f16) &&
            vl::f32_to_f16(7e4f) == 0x7c00,
        "pack_weight_rows<F16Ops>: fp16 values in the same layout, Inf beyond 65504");
  // The split: a hi plane as the bf16 pack, then lo = bf16(w - hi) in the same places (0 where hi is not finite).
  std::vector<float> inf(w1);
  inf[5] = std::numeric_limits<float>::infinity();
  kpad = 32, rows = 32;
  std::vector<uint16_t> both(static_cast<size_t>(2 * rows * kpad));
  launch({3, 1}, {64, 1}, [&] {
    g::pack_weight_rows<uint16_t, vl::simt::Bf16Ops, true>(inf.data(), w2.data(), 30, 30, 1, n, k, rows, kpad, true, both.data());
  });
  const std::vector<uint16_t> hi(both.begin(), both.begin() + rows * kpad), lo(both.begin() + rows * kpad, both.end());
  std::vector<float> rest(inf);
  for (float& x : rest) x = std::isinf(x) ? 0.0f : x - round_bf16(x);
  const std::vector<float> rest2 = [&] {
    std::vector<float> r(w2);
    for (float& x : r) x -= round_bf16(x);
    return r;
  }();
  const auto matches_lo = [&] {
    bool ok = true;
    for (int64_t j = 0; j < rows; ++j)
      for (int s2 = 0; s2 < kpad; ++s2) {
        const int h = static_cast<int>((j / 16) * 8 + j % 8), kk = g::packed_k(s2);
        const std::vector<float>& r = (j / 8) % 2 ? rest2 : rest;
        ok = ok && lo[j * kpad + s2] == (h < n && kk < k ? vl::f32_to_bf16(r[h * 30 + kk]) : 0);
      }
    return ok;
  };
  check(matches(hi, inf, vl::f32_to_bf16) && matches_lo(),
        "pack_weight_rows<..., kSplit>: bf16 hi plane, then lo = bf16(w - hi) in the same layout (0 beside an infinite hi)");
}

}  // namespace

int main() {
  test_gemm_mma();
  test_cp_async();
  test_mma_f16();
  test_pack_layout();
  test_f32<3, true>(130, 136, 37, 40, false);  // ragged K zero-filled within a chunk
  test_f32<3, true>(70, 260, 100, 100, true);  // 4 K tiles: the 3-stage ring wraps
  test_f32<3, false>(5, 9, 7, 7, true);        // rows not 16-byte aligned
  test_f32<1, true>(33, 40, 48, 48, true);     // 1 pass: both rounded to bf16
  test_f32<3, true>(1160, 200, 8, 8, false);   // 10 x 2 tiles: the grouped tile order
  test_f32_packed16<true>(67, 45, 50, 52, false);
  test_f32_packed16<true>(67, 20, 50, 52, true);  // H = 20: a partial group of 8
  test_f32_packed16<false>(9, 13, 19, 19, true);  // rows of 19 floats
  test_swiglu_f32(40, 136, 36);            // 2 N tiles of the interleaved W1/W2 rows
  test_bf16_bf16(50, 70, 72);
  test_batched<3>();
  test_patches<true>(2, 3, 8, 12, 4, 20);
  test_patches<false>(2, 2, 9, 6, 3, 10);
  // fp16 products (f16 autocast): the references round the operands to fp16.
  test_f32<1, true, vl::simt::F16Ops>(33, 40, 48, 48, true);
  test_f32<1, false, vl::simt::F16Ops>(5, 9, 7, 7, true);
  test_batched<1, vl::simt::F16Ops>();
  test_patches<true, 1, vl::simt::F16Ops>(2, 3, 8, 12, 4, 20);
  // Packed fp16 weights (f16 inference): plain and SwiGLU, both loaders.
  test_f32_packed16<true, vl::simt::F16Ops>(67, 45, 50, 52, false);
  test_f32_packed16<true, vl::simt::F16Ops>(67, 20, 50, 52, true);
  test_f32_packed16<false, vl::simt::F16Ops>(9, 13, 19, 19, true);
  // The Hopper kernel: wgmma mechanics, then packed bf16 / fp16 linears and
  // SwiGLU over ragged M, N, K (several K steps wrap the 4-stage ring).
  test_wgmma();
  test_wgmma_errors();
  test_tma();
  test_f32_packed16<true, vl::simt::Bf16Ops, true>(200, 300, 330, 332, false);
  test_f32_packed16<true, vl::simt::Bf16Ops, true>(67, 140, 50, 52, true);  // 288 interleaved rows: 2 N tiles
  test_f32_packed16<true, vl::simt::Bf16Ops, true>(5, 3, 8, 8, false);
  test_f32_packed16<true, vl::simt::F16Ops, true>(130, 140, 72, 72, false);
  test_f32_packed16<true, vl::simt::F16Ops, true>(67, 20, 50, 52, true);
  // f32 operands on the Hopper kernel (linears with f32 weights, matmuls):
  // B packed per call, the split's two planes, 128-wide N tiles.
  test_f32<3, true, vl::simt::Bf16Ops, true>(200, 300, 330, 332, true);  // 6 K steps: the ring wraps twice
  test_f32<3, true, vl::simt::Bf16Ops, true>(130, 136, 37, 40, false);    // ragged K inside a chunk
  test_f32<1, true, vl::simt::Bf16Ops, true>(70, 260, 100, 100, true);
  test_f32<1, true, vl::simt::F16Ops, true>(33, 40, 48, 48, true);
  test_swiglu_f32<true>(40, 136, 36);
  return vl::simt_test::finish();
}
