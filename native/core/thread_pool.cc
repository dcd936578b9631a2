#include "core/thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.h"

namespace vl {
namespace {

thread_local bool t_in_parallel = false;

// A model runs a parallel region every few hundred microseconds; a futex
// sleep and wake-up between them costs tens of microseconds each on a
// virtual machine. So waiting threads spin this long before they sleep.
constexpr auto kSpin = std::chrono::microseconds(100);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// Spins until ready() or kSpin has passed; true if ready() became true.
template <typename Ready>
bool spin_until(Ready&& ready) {
  const auto end = std::chrono::steady_clock::now() + kSpin;
  for (int i = 1;; ++i) {
    if (ready()) return true;
    cpu_relax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() >= end) return ready();
  }
}

class ThreadPool {
 public:
  explicit ThreadPool(int n) { start(n); }

  // Lock-free: kernels ask for the size from inside parallel regions, while
  // call_mutex_ is held by the region itself.
  int size() const { return size_.load(); }

  void resize(int n) {
    std::lock_guard<std::mutex> lock(call_mutex_);
    stop();
    start(n);
  }

  void run(int64_t chunks, const std::function<void(int64_t)>& body) {
    std::lock_guard<std::mutex> lock(call_mutex_);  // one parallel region at a time
    if (workers_.empty() || chunks == 1) {
      for (int64_t c = 0; c < chunks; ++c) body(c);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mutex_);
      body_ = &body;
      chunks_ = chunks;
      next_.store(0);
      pending_.store(static_cast<int>(workers_.size()));
      generation_.fetch_add(1, std::memory_order_release);  // publishes the fields above to spinning workers
    }
    cv_.notify_all();
    t_in_parallel = true;
    work();
    t_in_parallel = false;
    const auto done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
    std::unique_lock<std::mutex> lk(mutex_, std::defer_lock);
    if (!spin_until(done)) {
      lk.lock();
      done_cv_.wait(lk, done);
    } else {
      lk.lock();  // error_ is written under it
    }
    body_ = nullptr;
    if (error_) {
      std::exception_ptr e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }

 private:
  // An exception in a chunk is kept and rethrown on the calling thread;
  // letting it escape a worker would terminate the process.
  void work() {
    for (;;) {
      const int64_t c = next_.fetch_add(1);
      if (c >= chunks_) break;
      try {
        (*body_)(c);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
  }

  void loop() {
    pthread_setname_np(pthread_self(), "vl:pool");
    t_in_parallel = true;
    uint64_t seen = 0;
    for (;;) {
      const auto woken = [&] { return quit_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen; };
      if (!spin_until(woken)) {
        std::unique_lock<std::mutex> lk(mutex_);
        cv_.wait(lk, woken);
      }
      if (quit_.load()) return;
      seen = generation_.load(std::memory_order_acquire);
      work();
      // Under the lock, so a caller that saw pending_ > 0 and went to sleep is woken.
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(mutex_);
        done_cv_.notify_one();
      }
    }
  }

  void start(int n) {
    quit_.store(false);
    for (int i = 1; i < n; ++i) workers_.emplace_back([this] { loop(); });
    size_.store(n);
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mutex_);
      quit_.store(true);
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::mutex call_mutex_;
  std::mutex mutex_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t)>* body_ = nullptr;
  int64_t chunks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> quit_{false};
  std::exception_ptr error_;
  std::atomic<int> size_{1};
};

ThreadPool& pool() {
  // Never destroyed: worker threads may still be parked at process exit.
  static ThreadPool* p = new ThreadPool(default_num_threads());
  return *p;
}

}  // namespace

int default_num_threads() {
  if (const char* env = std::getenv("VLLAMA_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    VL_CHECK(end != env && *end == '\0' && n >= 1 && n <= 1024, ErrorCode::Argument,
             "VLLAMA_NUM_THREADS must be an integer from 1 to 1024, got '", env, "'");
    return static_cast<int>(n);
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

int num_threads() { return pool().size(); }

void set_num_threads(int n) {
  VL_CHECK(n >= 1 && n <= 1024, ErrorCode::Argument, "setNumThreads: expected an integer from 1 to 1024, got ", n);
  pool().resize(n);
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = (n + grain - 1) / grain;
  if (chunks == 1 || t_in_parallel) {
    fn(0, n);
    return;
  }
  pool().run(chunks, [&](int64_t c) {
    const int64_t b = c * grain;
    fn(b, std::min(n, b + grain));
  });
}

}  // namespace vl
