// The GEMM kernels of native/cuda/kernels on the CPU, through the SIMT runner,
// against plain double-precision references. Built and run by test/simt.test.ts.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "cuda/kernels/gemm_mma.cuh"
#include "tests/simt_check.h"
#include "tests/simt_runner.h"

using vl::simt::Dim;
using vl::simt::launch;
using vl::simt_test::check;

namespace {

void test_gemm_mma() {
  std::mt19937 rng(11);
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
        worst = std::max(worst, std::fabs(c[i * N + j] - ref));
      }
    check(worst < 1e-4, "gemm_bf16_mma " + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) +
                            " matches the reference (max error " + std::to_string(worst) + ")");
  }
}

}  // namespace

int main() {
  test_gemm_mma();
  return vl::simt_test::finish();
}
