// A persistent pool of worker threads for data-parallel CPU kernels.
// The calling thread takes part in the work, so a pool of N threads runs N
// chunks at once. Nested parallel_for calls run inline (no deadlock).
#pragma once
#include <cstdint>
#include <functional>

namespace vl {

// Thread count from VLLAMA_NUM_THREADS, else the CPUs this process may run on.
int default_num_threads();
int num_threads();
// Waits for running work, then resizes the pool (n >= 1).
void set_num_threads(int n);

// Calls fn(begin, end) over [0, n) in chunks of at least `grain` items.
// Chunk boundaries depend only on n and grain, never on the thread count, so
// kernels that reduce per chunk give bit-identical results for any pool size.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace vl
