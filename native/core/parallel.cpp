#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace taskmerge {

namespace {

// One parallelFor call: its ranges are claimed through an atomic counter by
// whichever threads pick up the job (pool workers and the caller).
struct Job {
  size_t n = 0, block = 0, blocks = 0;
  const std::function<void(size_t, size_t)>* fn = nullptr;
  std::atomic<size_t> next{0};
  std::atomic<size_t> done{0};
  std::mutex m;
  std::condition_variable cv;
  std::exception_ptr error;

  // Runs blocks until none is left; returns when this thread has no more work.
  void work() {
    for (;;) {
      size_t b = next.fetch_add(1);
      if (b >= blocks) return;
      size_t begin = b * block, end = std::min(n, begin + block);
      try {
        (*fn)(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(m);
        if (!error) error = std::current_exception();
      }
      if (done.fetch_add(1) + 1 == blocks) {
        std::lock_guard<std::mutex> lock(m);
        cv.notify_all();
      }
    }
  }
};

class Pool {
 public:
  explicit Pool(size_t workers) {
    for (size_t i = 0; i < workers; i++) threads_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void submit(const std::shared_ptr<Job>& job, size_t helpers) {
    {
      std::lock_guard<std::mutex> lock(m_);
      for (size_t i = 0; i < helpers; i++) queue_.push_back(job);
    }
    cv_.notify_all();
  }

 private:
  void loop() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (stop_ && queue_.empty()) return;
        job = queue_.front();
        queue_.pop_front();
      }
      job->work();
    }
  }
  std::vector<std::thread> threads_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::mutex m_;
  std::condition_variable cv_;
  bool stop_ = false;
};

Pool& pool() {
  // Leaked on purpose: joining threads during static destruction at process
  // exit can deadlock inside Node's shutdown.
  static Pool* p = new Pool(threadCount() > 1 ? threadCount() - 1 : 0);
  return *p;
}

}  // namespace

size_t threadCount() {
  static size_t count = [] {
    if (const char* env = std::getenv("TASKMERGE_THREADS")) {
      long v = std::strtol(env, nullptr, 10);
      if (v > 0 && v <= 1024) return size_t(v);
    }
    size_t hw = std::thread::hardware_concurrency();
    return hw ? hw : size_t(1);
  }();
  return count;
}

void parallelFor(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<size_t>(grain, 1);
  size_t threads = threadCount();
  size_t blocks = std::min((n + grain - 1) / grain, threads * 4);
  if (blocks <= 1 || threads == 1) {
    fn(0, n);
    return;
  }
  auto job = std::make_shared<Job>();
  job->n = n;
  job->block = (n + blocks - 1) / blocks;
  job->blocks = (n + job->block - 1) / job->block;
  job->fn = &fn;
  pool().submit(job, std::min(threads - 1, job->blocks - 1));
  job->work();
  {
    std::unique_lock<std::mutex> lock(job->m);
    job->cv.wait(lock, [&] { return job->done.load() == job->blocks; });
  }
  if (job->error) std::rethrow_exception(job->error);
}

}  // namespace taskmerge
