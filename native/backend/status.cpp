#include "status.h"

namespace taskmerge {
namespace backend {

tm_role roleOf(const std::string& role) {
  if (role == "base") return TM_ROLE_BASE;
  if (role == "expert") return TM_ROLE_EXPERT;
  if (role == "stats") return TM_ROLE_STATS;
  if (role == "bundle") return TM_ROLE_BUNDLE;
  return TM_ROLE_NONE;
}

const char* roleName(tm_role r) {
  switch (r) {
    case TM_ROLE_BASE: return "base";
    case TM_ROLE_EXPERT: return "expert";
    case TM_ROLE_STATS: return "stats";
    case TM_ROLE_BUNDLE: return "bundle";
    default: return "";
  }
}

void raise(tm_status s, const tm_error& e, const char* entry) {
  std::string msg(e.message, strnlen(e.message, sizeof e.message));
  std::string arg(e.arg, strnlen(e.arg, sizeof e.arg));
  if (s == TM_INPUT && e.role != TM_ROLE_NONE) throw InputError(arg, e.index, msg, e.element, roleName(e.role));
  if (s == TM_UNSUPPORTED && msg.empty()) msg = std::string(entry) + ": not supported by this backend";
  if (msg.empty()) msg = std::string(entry) + " failed (status " + std::to_string(int(s)) + ")";
  throw Error(msg);
}

}  // namespace backend
}  // namespace taskmerge
