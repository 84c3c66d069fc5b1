// Op "device_release": frees the idle staging buffers DeviceCall keeps for the
// backend of `device` between calls (boundary/staging_pool.h); a job calls it
// at its end for each device it ran ops on. Result: freed (buffers).
#include "../backend/registry.h"
#include "../boundary/staging_pool.h"
#include "../core/op.h"

namespace taskmerge {

static void deviceReleaseOp(const OpArgs& a, OpResult& r) {
  tm_backend* be = backend::find(a.str("device"));
  if (!be) throw ArgumentError("device", -1, "no backend named '" + a.str("device") + "'");
  r.nums["freed"] = double(boundary::releaseStaging(*be));
}

TM_REGISTER_OP("device_release", deviceReleaseOp);

}  // namespace taskmerge
