// A small fork-join thread pool. Jobs are claimed from an atomic counter, so which thread runs
// a job varies from call to call; every kernel in this addon therefore gives each job a
// disjoint part of the output and a fixed order of arithmetic, which makes results independent
// of the thread count and of timing (bit for bit).
//
// The caller takes part and waits only for jobs that were claimed, never for a worker to wake
// up: a worker that is asleep when a run starts costs nothing, the caller does its share.
// Workers spin for a while after each run, because a training step's kernels come tens of
// microseconds apart and waking a sleeping thread costs about as much.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ONEDP_PAUSE() _mm_pause()
#else
#define ONEDP_PAUSE() std::this_thread::yield()
#endif

namespace onedp {


class Pool {
 public:
  explicit Pool(int n) { resize(n); }
  ~Pool() { stop(); }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  int size() const { return n_; }
  // How many calls were shared out between threads (tests check that threading happened).
  uint64_t parallelRuns() const { return runs_.load(); }

  // Most jobs one run can have (the claim word holds 20 bits of job index and count).
  static constexpr int kMaxJobs = (1 << 20) - 1;

  void resize(int n) {
    if (n < 1) n = 1;
    if (n == n_) return;
    stop();
    n_ = n;
    quit_ = false;
    // The generation is read here, not in the new thread: a run may start before the thread does.
    const uint64_t start = gen_.load();
    for (int i = 1; i < n_; i++) workers_.emplace_back([this, start] { loop(start); });
  }

  // Runs fn(job) for every job in [0, jobs); the calling thread takes part.
  void run(int jobs, const std::function<void(int)>& fn) {
    if (jobs <= 0) return;
    if (n_ == 1 || jobs == 1) {
      for (int j = 0; j < jobs; j++) fn(j);
      return;
    }
    if (jobs > kMaxJobs) {
      for (int j0 = 0; j0 < jobs; j0 += kMaxJobs) {
        const int n = std::min(kMaxJobs, jobs - j0);
        run(n, [&](int j) { fn(j0 + j); });
      }
      return;
    }
    runs_.fetch_add(1);
    uint64_t g;
    {
      std::lock_guard<std::mutex> lk(m_);
      g = (gen_.load() + 1) & kGenMask;
      task_ = &fn;
      done_.store(0);
      claim_.store(pack(g, (uint64_t)jobs, 0));
      gen_.store(g);
    }
    if (sleepers_.load() > 0) cv_.notify_all();
    work(g);
    int spins = 0;
    while (done_.load(std::memory_order_acquire) < jobs) {
      if (++spins < 4096) ONEDP_PAUSE();
      else std::this_thread::yield();
    }
  }

 private:
  // claim word: generation (24 bits) | job count (20 bits) | next job index (20 bits).
  static constexpr uint64_t kGenMask = (1u << 24) - 1;
  static uint64_t pack(uint64_t g, uint64_t total, uint64_t idx) { return (g << 40) | (total << 20) | idx; }

  // Claims and runs jobs of generation g until none are left. A claim succeeds only while the
  // word still belongs to g, so a thread that woke up late can never run a later run's job
  // with an earlier run's count, and a claimed job keeps the caller (and fn) waiting.
  void work(uint64_t g) {
    for (;;) {
      uint64_t c = claim_.load();
      if ((c >> 40) != g) return;
      const uint64_t total = (c >> 20) & kMaxJobs, idx = c & kMaxJobs;
      if (idx >= total) return;
      if (!claim_.compare_exchange_weak(c, c + 1)) continue;
      (*task_)((int)idx);
      done_.fetch_add(1, std::memory_order_release);
    }
  }

  void loop(uint64_t seen) {
    for (;;) {
      auto t0 = std::chrono::steady_clock::now();
      int spins = 0;
      while (gen_.load() == seen && !quit_.load()) {
        ONEDP_PAUSE();
        if ((++spins & 63) == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(300)) break;
      }
      if (gen_.load() == seen && !quit_.load()) {
        std::unique_lock<std::mutex> lk(m_);
        sleepers_.fetch_add(1);
        cv_.wait(lk, [&] { return gen_.load() != seen || quit_.load(); });
        sleepers_.fetch_sub(1);
      }
      if (quit_.load()) return;
      seen = gen_.load();
      work(seen);
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(m_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  int n_ = 0;
  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<uint64_t> claim_{0};
  std::atomic<int> done_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> quit_{false};
  std::atomic<uint64_t> runs_{0};
  const std::function<void(int)>* task_ = nullptr;
};

}  // namespace onedp
