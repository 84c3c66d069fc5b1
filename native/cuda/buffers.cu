// Device buffers and host↔device copies through the pinned staging ring.
#include <algorithm>
#include <cstring>

#include "context.h"
#include "entries.h"

struct tm_buffer {
  void* data;
  size_t bytes;
};

namespace tmcuda {

tm_status bufferAlloc(tm_backend* be, size_t bytes, tm_buffer** out, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  void* p = nullptr;
  // The pool hands out 256-byte aligned blocks (≥ the 64 the interface asks for).
  if (bytes) TM_CUDA_TRY(cudaMallocAsync(&p, bytes, c.compute));
  *out = new tm_buffer{p, bytes};
  return TM_OK;
}

// Kernels cannot read pageable host memory: the host allocates and copies.
tm_status bufferHostView(tm_backend* be, void*, size_t, tm_buffer**, tm_error* err) {
  return fail(err, TM_UNSUPPORTED, "the CUDA backend has no host views: allocate a buffer and copy");
}

void bufferFree(tm_backend* be, tm_buffer* buf) {
  if (!buf) return;
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  if (c.info.available) cudaSetDevice(c.device);  // per host thread
  if (buf->data) cudaFreeAsync(buf->data, c.compute);  // after the work queued on it
  delete buf;
}

void* bufferData(tm_backend*, tm_buffer* buf) { return buf->data; }
size_t bufferSize(tm_backend*, tm_buffer* buf) { return buf->bytes; }

static tm_status checkRange(tm_buffer* b, size_t offset, size_t bytes, const char* what, tm_error* err) {
  if (offset > b->bytes || bytes > b->bytes - offset)
    return fail(err, TM_INPUT, "%s: %zu bytes at offset %zu exceed the buffer's %zu", what, bytes, offset, b->bytes);
  return TM_OK;
}

tm_status copyToBackend(tm_backend* be, tm_buffer* dst, size_t offset, const void* src, size_t bytes, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  TM_CHECK(checkRange(dst, offset, bytes, "copy_to_backend", err));
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  // src is free for the caller once this returns: each piece is in a pinned
  // slot before its transfer is queued, and the host fills the other slot
  // while that transfer runs.
  for (size_t done = 0; done < bytes;) {
    const size_t piece = std::min(Context::kSlotBytes, bytes - done);
    const int s = c.nextSlot;
    c.nextSlot = (s + 1) % Context::kSlots;
    TM_CUDA_TRY(cudaEventSynchronize(c.slotDone[s]));
    std::memcpy(c.pinned[s], static_cast<const uint8_t*>(src) + done, piece);
    TM_CUDA_TRY(cudaMemcpyAsync(static_cast<uint8_t*>(dst->data) + offset + done, c.pinned[s], piece,
                                cudaMemcpyHostToDevice, c.compute));
    TM_CUDA_TRY(cudaEventRecord(c.slotDone[s], c.compute));
    done += piece;
  }
  return TM_OK;
}

tm_status copyToHost(tm_backend* be, void* dst, tm_buffer* src, size_t offset, size_t bytes, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  TM_CHECK(checkRange(src, offset, bytes, "copy_to_host", err));
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  // Two pieces in flight: piece k+1 transfers while piece k is copied out.
  size_t queued = 0, drained = 0;
  size_t pieceAt[Context::kSlots] = {}, pieceLen[Context::kSlots] = {};
  int head = c.nextSlot, tail = c.nextSlot, inFlight = 0;
  while (drained < bytes) {
    while (queued < bytes && inFlight < Context::kSlots) {
      const size_t piece = std::min(Context::kSlotBytes, bytes - queued);
      TM_CUDA_TRY(cudaEventSynchronize(c.slotDone[head]));  // an upload from this slot is done
      TM_CUDA_TRY(cudaMemcpyAsync(c.pinned[head], static_cast<const uint8_t*>(src->data) + offset + queued, piece,
                                  cudaMemcpyDeviceToHost, c.compute));
      TM_CUDA_TRY(cudaEventRecord(c.slotDone[head], c.compute));
      pieceAt[head] = queued;
      pieceLen[head] = piece;
      queued += piece;
      head = (head + 1) % Context::kSlots;
      inFlight++;
    }
    TM_CUDA_TRY(cudaEventSynchronize(c.slotDone[tail]));
    std::memcpy(static_cast<uint8_t*>(dst) + pieceAt[tail], c.pinned[tail], pieceLen[tail]);
    drained += pieceLen[tail];
    tail = (tail + 1) % Context::kSlots;
    inFlight--;
  }
  c.nextSlot = head;
  return TM_OK;
}

tm_status bufferFill(tm_backend* be, tm_buffer* buf, size_t offset, size_t bytes, uint8_t value, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  TM_CHECK(checkRange(buf, offset, bytes, "buffer_fill", err));
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  TM_CUDA_TRY(cudaMemsetAsync(static_cast<uint8_t*>(buf->data) + offset, value, bytes, c.compute));
  return TM_OK;
}

tm_status synchronize(tm_backend* be, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  TM_CUDA_TRY(cudaStreamSynchronize(c.compute));
  TM_CUDA_TRY(cudaStreamSynchronize(c.copy));
  TM_CUDA_TRY(cudaStreamSynchronize(c.download));
  return TM_OK;
}

// ---- pinned host memory and overlapped copies (DeviceCall::blocks) -----------------

// Portable: the registration holds for every context, so any host thread may copy.
tm_status hostRegister(tm_backend* be, void* host, size_t bytes, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  TM_CUDA_TRY(cudaHostRegister(host, bytes, cudaHostRegisterPortable));
  return TM_OK;
}

void hostUnregister(tm_backend* be, void* host) {
  if (!ctx(be).info.available) return;
  if (cudaHostUnregister(host) != cudaSuccess) cudaGetLastError();
}

// From pinned memory these are DMA and overlap the kernels on `compute`; from
// pageable memory the driver stages them and they return once src is read.
tm_status copyToBackendAsync(tm_backend* be, tm_buffer* dst, size_t offset, const void* src, size_t bytes, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  TM_CHECK(checkRange(dst, offset, bytes, "copy_to_backend_async", err));
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  // After the kernels queued so far: a pooled buffer may still be read by another op's kernel.
  TM_CUDA_TRY(cudaEventRecord(c.computed, c.compute));
  TM_CUDA_TRY(cudaStreamWaitEvent(c.copy, c.computed, 0));
  TM_CUDA_TRY(cudaMemcpyAsync(static_cast<uint8_t*>(dst->data) + offset, src, bytes, cudaMemcpyHostToDevice, c.copy));
  return TM_OK;
}

tm_status copyToHostAsync(tm_backend* be, void* dst, tm_buffer* src, size_t offset, size_t bytes, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  TM_CHECK(checkRange(src, offset, bytes, "copy_to_host_async", err));
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  TM_CUDA_TRY(cudaEventRecord(c.computed, c.compute));
  TM_CUDA_TRY(cudaStreamWaitEvent(c.download, c.computed, 0));
  TM_CUDA_TRY(cudaMemcpyAsync(dst, static_cast<const uint8_t*>(src->data) + offset, bytes, cudaMemcpyDeviceToHost, c.download));
  return TM_OK;
}

tm_status copyWait(tm_backend* be, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  TM_CUDA_TRY(cudaEventRecord(c.uploaded, c.copy));
  TM_CUDA_TRY(cudaStreamWaitEvent(c.compute, c.uploaded, 0));
  return TM_OK;
}

// The kernels take their scratch from the stream-ordered pool (CallArgs and
// cuSOLVER workspaces), so they ask the caller for none.
size_t workBytes(tm_backend*, tm_kernel, size_t, size_t) { return 0; }

}  // namespace tmcuda
