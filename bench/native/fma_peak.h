#pragma once

struct FmaPeak {
  const char* isa;  // the vector width measured: "avx512" (zmm) or "avx2" (ymm)
  double gflops;    // f32 FMA throughput of `threads` cores together
};

// Runs about `seconds` of FMAs on each of `threads` threads at once.
FmaPeak measure_fma_peak(int threads, double seconds);

// One thread's share of a probe: iters x fma_flops_per_iter() flops.
void fma_run(long iters);
double fma_flops_per_iter();
