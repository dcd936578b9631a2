// FMA throughput probe: every thread runs independent chains of vector FMAs
// (enough of them to cover latency x pipes) and the slowest thread's time
// gives the machine's attainable f32 peak for that many cores.
#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "fma_peak.h"

namespace {

constexpr int kChains = 24;

__attribute__((target("avx512f,fma"))) double run_avx512(long iters) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(1.0f + i * 1e-3f);
  const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
  }
  float sink = 0;
  for (int i = 0; i < kChains; ++i) sink += _mm512_reduce_add_ps(acc[i]);
  return sink;
}

__attribute__((target("avx2,fma"))) double run_avx2(long iters) {
  __m256 acc[kChains / 2];  // 16 ymm registers: 12 chains
  for (int i = 0; i < kChains / 2; ++i) acc[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
  const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains / 2; ++i) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
  }
  float sink = 0;
  for (int i = 0; i < kChains / 2; ++i) {
    float v[8];
    _mm256_storeu_ps(v, acc[i]);
    for (float x : v) sink += x;
  }
  return sink;
}

}  // namespace

double fma_flops_per_iter() { return __builtin_cpu_supports("avx512f") ? kChains * 16 * 2.0 : (kChains / 2) * 8 * 2.0; }

void fma_run(long iters) {
  volatile double s = __builtin_cpu_supports("avx512f") ? run_avx512(iters) : run_avx2(iters);
  (void)s;
}

FmaPeak measure_fma_peak(int threads, double seconds) {
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const double flops_per_iter = fma_flops_per_iter();
  // Calibrate the iteration count on one thread.
  long iters = 1 << 16;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    volatile double s = avx512 ? run_avx512(iters) : run_avx2(iters);
    (void)s;
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt > seconds / 4) {
      iters = static_cast<long>(iters * seconds / dt);
      break;
    }
    iters *= 2;
  }
  std::atomic<int> ready{0};
  std::vector<double> times(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < threads) {
      }
      const auto t0 = std::chrono::steady_clock::now();
      volatile double s = avx512 ? run_avx512(iters) : run_avx2(iters);
      (void)s;
      times[t] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    });
  for (auto& th : pool) th.join();
  double slowest = 0;
  for (double d : times) slowest = d > slowest ? d : slowest;
  return {avx512 ? "avx512" : "avx2", threads * iters * flops_per_iter / slowest / 1e9};
}
