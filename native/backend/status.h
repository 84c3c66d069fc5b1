// Between C++ exceptions and the C ABI of backend.h: a backend entry runs its
// body under guarded() (exceptions become a tm_status and a filled tm_error),
// and the op layer turns a failed status back into the exception with
// raise() — the same message text, the input's role, index and element kept.
#pragma once
#include <cstdio>
#include <cstring>
#include <new>
#include <string>

#include "../core/op.h"
#include "backend.h"

namespace taskmerge {
namespace backend {

tm_role roleOf(const std::string& role);  // an InputError's role
const char* roleName(tm_role r);

inline void fill(tm_error* err, tm_role role, long long index, long long element, const std::string& arg, const std::string& msg) {
  if (!err) return;
  err->role = role;
  err->index = index;
  err->element = element;
  std::snprintf(err->arg, sizeof err->arg, "%s", arg.c_str());
  std::snprintf(err->message, sizeof err->message, "%s", msg.c_str());
}

template <class F>
tm_status guarded(tm_error* err, F&& body) {
  try {
    body();
    return TM_OK;
  } catch (const InputError& e) {
    const tm_role r = roleOf(e.role);
    if (r == TM_ROLE_NONE) fill(err, r, -1, -1, "", e.what());
    else fill(err, r, e.index, e.element, e.arg, e.detail);
    return TM_INPUT;
  } catch (const Error& e) {
    fill(err, TM_ROLE_NONE, -1, -1, "", e.what());
    return TM_INPUT;
  } catch (const std::bad_alloc&) {
    fill(err, TM_ROLE_NONE, -1, -1, "", "out of memory");
    return TM_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    fill(err, TM_ROLE_NONE, -1, -1, "", e.what());
    return TM_DEVICE_ERROR;
  }
}

// Throws the error a failed entry reported (InputError when it names an input).
[[noreturn]] void raise(tm_status s, const tm_error& e, const char* entry);

inline void check(tm_status s, const tm_error& e, const char* entry) {
  if (s != TM_OK) raise(s, e, entry);
}

}  // namespace backend
}  // namespace taskmerge
