// The state buffer ops (boundary/state_buffer.h): selection state that JS
// holds across op calls as a handle, in memory of the backend that runs the
// selection ops.
//
// Op "state_alloc": device, bytes → state (a handle to `bytes` zeroed bytes on
//   that device's backend).
// Op "state_fill": state, offset, bytes, value (0..255) → sets those bytes.
// Op "state_read": state, offset, bytes, into (a host buffer of `bytes` bytes)
//   → copies them back: what the host needs, not the whole state.
// Op "state_free": state → frees it now (or when the ops using it end); a
//   second free, or any use afterwards, is an ArgumentError.
#include <memory>

#include "../backend/registry.h"
#include "../boundary/args.h"

namespace taskmerge {

namespace {

constexpr double kMaxBytes = 9007199254740992.0;

void stateAllocOp(const OpArgs& a, OpResult& r) {
  const size_t bytes = boundary::count(a, "bytes", kMaxBytes);
  tm_backend& be = backend::select(a.str("device", "cpu"));
  r.states["state"] = std::make_shared<boundary::StateHandle>(std::make_shared<boundary::StateBuffer>(be, bytes));
}

void stateFillOp(const OpArgs& a, OpResult&) {
  boundary::State s = boundary::state(a, "state");
  const double value = a.num("value", 0);
  if (!(value >= 0 && value <= 255) || value != double(int(value))) throw ArgumentError("value", -1, "must be a byte (0..255)");
  s.buffer().fill(boundary::count(a, "offset", size_t(0), kMaxBytes), boundary::count(a, "bytes", kMaxBytes), uint8_t(value));
}

void stateReadOp(const OpArgs& a, OpResult&) {
  boundary::State s = boundary::state(a, "state");
  const size_t bytes = boundary::count(a, "bytes", kMaxBytes);
  Bytes into = boundary::sized(a, "into", bytes);
  s.buffer().read(boundary::count(a, "offset", size_t(0), kMaxBytes), bytes, into.data);
}

void stateFreeOp(const OpArgs& a, OpResult&) {
  if (!boundary::stateHandle(a, "state")->release()) throw ArgumentError("state", -1, "the state buffer was already freed");
}

}  // namespace

TM_REGISTER_OP("state_alloc", stateAllocOp);
TM_REGISTER_OP("state_fill", stateFillOp);
TM_REGISTER_OP("state_read", stateReadOp);
TM_REGISTER_OP("state_free", stateFreeOp);

}  // namespace taskmerge
