#include "linalg.h"

namespace taskmerge {
namespace linalg {

const char* backendName() {
#ifdef TM_HAVE_BLAS
  return "openblas";
#else
  return "builtin";
#endif
}

}  // namespace linalg
}  // namespace taskmerge
