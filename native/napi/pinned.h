// pinnedBuffer(bytes, device): host memory page-locked for a backend's copies
// (its host_register entry), as a Node Buffer the addon owns (pinned.cpp).
#pragma once
#include <napi.h>

namespace taskmerge {
namespace napi {

Napi::Value PinnedBuffer(const Napi::CallbackInfo& info);

}  // namespace napi
}  // namespace taskmerge
