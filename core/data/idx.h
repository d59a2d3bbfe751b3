// The IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/):
//   bytes 0-1  zero
//   byte 2     element type: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32,
//              0x0E f64
//   byte 3     number of dimensions, 1..16
//   then       one big-endian uint32 per dimension, then the elements,
//              big-endian, row-major
// Files may be gzip-compressed (detected by the gzip magic, not the name).
// The tensor keeps the element type where Tensor has it: u8 -> U8, i8 -> I8,
// i32 -> I32, f32 -> F32; i16 widens to I32 and f64 narrows to F32.
#ifndef SQUEEZE_CORE_DATA_IDX_H_
#define SQUEEZE_CORE_DATA_IDX_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/data/dataset.h"
#include "core/model/tensor.h"

namespace squeeze::core::data {

// Parses an IDX file held in memory (gzip or not). INVALID_ARGUMENT naming
// `name` and the field for a wrong magic, an unknown element type, zero or
// more than 16 dimensions, dimensions whose product overflows, and a size
// that does not match the dimensions (truncated or trailing bytes).
absl::StatusOr<model::Tensor> ParseIdx(std::string_view bytes,
                                       const std::string& name);

// ReadFile + ParseIdx.
absl::StatusOr<model::Tensor> ReadIdxFile(const std::string& path);

// An images file and a labels file with the same number of examples (e.g.
// t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz).
absl::StatusOr<Dataset> ReadIdxDataset(const std::string& images_path,
                                       const std::string& labels_path);

}  // namespace squeeze::core::data

#endif  // SQUEEZE_CORE_DATA_IDX_H_
