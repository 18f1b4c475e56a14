// A small fork-join thread pool. Jobs are claimed from an atomic counter, so which thread runs
// a job varies from call to call; every kernel in this addon therefore gives each job a
// disjoint part of the output and a fixed order of arithmetic, which makes results independent
// of the thread count and of timing (bit for bit).
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

  void resize(int n) {
    if (n < 1) n = 1;
    if (n == n_) return;
    stop();
    n_ = n;
    quit_ = false;
    for (int i = 1; i < n_; i++) workers_.emplace_back([this] { loop(); });
  }

  // Runs fn(job) for every job in [0, jobs); the calling thread takes part.
  void run(int jobs, const std::function<void(int)>& fn) {
    if (jobs <= 0) return;
    if (n_ == 1 || jobs == 1) {
      for (int j = 0; j < jobs; j++) fn(j);
      return;
    }
    runs_.fetch_add(1);
    {
      std::lock_guard<std::mutex> lk(m_);
      task_ = &fn;
      total_ = jobs;
      next_.store(0);
      busy_.store(n_ - 1);
      gen_.fetch_add(1);
    }
    cv_.notify_all();
    work();
    // The last jobs finish about together: spin, then yield.
    int spins = 0;
    while (busy_.load() != 0) {
      if (++spins < 20000) ONEDP_PAUSE();
      else std::this_thread::yield();
    }
    task_ = nullptr;
  }

 private:
  void work() {
    const auto& fn = *task_;
    for (int j = next_.fetch_add(1); j < total_; j = next_.fetch_add(1)) fn(j);
  }

  void loop() {
    uint64_t seen = gen_.load();
    for (;;) {
      // Spin about 30 us before sleeping: kernels of one training step come in quick
      // succession, and a futex wake-up costs more than that.
      auto t0 = std::chrono::steady_clock::now();
      while (gen_.load() == seen && !quit_.load()) {
        ONEDP_PAUSE();
        if (std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(30)) break;
      }
      if (gen_.load() == seen && !quit_.load()) {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, [&] { return gen_.load() != seen || quit_.load(); });
      }
      if (quit_.load()) return;
      seen = gen_.load();
      work();
      busy_.fetch_sub(1);
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
  std::atomic<int> next_{0};
  std::atomic<int> busy_{0};
  std::atomic<bool> quit_{false};
  std::atomic<uint64_t> runs_{0};
  int total_ = 0;
  const std::function<void(int)>* task_ = nullptr;
};

}  // namespace onedp
