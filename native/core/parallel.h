// A small shared thread pool. parallelFor splits [0,n) into blocks of at least
// `grain` items and runs them on the pool; the calling thread works too, so
// nested or concurrent calls from several AsyncWorkers cannot deadlock.
#pragma once
#include <cstddef>
#include <functional>

namespace taskmerge {

// Number of worker threads (TASKMERGE_THREADS, else the hardware concurrency).
size_t threadCount();

// fn(begin, end) is called for disjoint ranges covering [0, n). Exceptions
// thrown by fn are rethrown (the first one) after all ranges have finished.
void parallelFor(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

}  // namespace taskmerge
