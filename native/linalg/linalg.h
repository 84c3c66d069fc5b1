// Dense linear algebra used by the data-aware methods. Two implementations
// share this interface: OpenBLAS/LAPACKE (when the build found them) and a
// portable built-in one. Row-major storage throughout.
#pragma once

namespace taskmerge {
namespace linalg {

// "openblas" or "builtin": the implementation currently selected.
const char* backendName();

}  // namespace linalg
}  // namespace taskmerge
