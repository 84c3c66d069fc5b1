// The rows arguments of the statistics ops (gram_accumulate, norm_accumulate):
// rows, rowsDtype (F32 or F64) and width, checked once (a whole number of rows).
#pragma once
#include "../core/op.h"
#include "../core/rows.h"

namespace taskmerge {
namespace boundary {

Rows rows(const OpArgs& a);

}  // namespace boundary
}  // namespace taskmerge
