#include "rows.h"

#include "args.h"

namespace taskmerge {
namespace boundary {

Rows rows(const OpArgs& a) {
  Rows r;
  r.type = DType(int(floatDtype(a, "rowsDtype")));
  if (r.type != DType::F32 && r.type != DType::F64) throw ArgumentError("rowsDtype", -1, "rows must be float32 or float64");
  r.width = count(a, "width");
  Bytes b = a.buf("rows");
  size_t es = dtypeSize(r.type);
  if (r.width == 0 || b.size % (r.width * es) != 0)
    throw ArgumentError("rows", -1, std::to_string(b.size / es) + " values is not a whole number of rows of width " +
                                        std::to_string(r.width));
  r.data = b.data;
  r.count = b.size / (r.width * es);
  return r;
}

}  // namespace boundary
}  // namespace taskmerge
