// Backend buffers that stand in for host memory on a backend without host
// views (DeviceCall copies the op's buffers into them), kept per backend
// between op calls so that a chunk op allocates nothing in steady state:
// an idle buffer serves any request of its size class (the next power of two,
// at least 64 KiB), and at most kIdleBytes stay idle per backend (the oldest
// go first). The job frees them at its end (op "device_release"); what is
// left at process exit goes with the backend.
#pragma once
#include <cstddef>

#include "../backend/backend.h"

namespace taskmerge {
namespace boundary {

// A buffer of at least `bytes` (its size class); throws when the backend cannot allocate one.
tm_buffer* takeStaging(tm_backend& be, size_t bytes);
// Hands a buffer from takeStaging back for reuse (work queued on it may still be running).
void giveStaging(tm_backend& be, tm_buffer* b);
// Frees the idle buffers of `be`; returns how many.
size_t releaseStaging(tm_backend& be);

}  // namespace boundary
}  // namespace taskmerge
