// NumPy's .npy and .npz files (numpy.lib.format, format versions 1.0-3.0).
// .npy: "\x93NUMPY", major and minor version bytes, a little-endian header
// length (uint16 for 1.0, uint32 for 2.0 and 3.0), then a Python dict
// literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } and
// the C-order elements. Element types: f2 f4 f8 i1 i2 i4 i8 u1 b1 in either
// byte order ('<', '>', '|', '='); f8 narrows to F32 and i2 widens to I32,
// the others map to the Tensor dtype of the same width. Fortran order,
// structured dtypes and object arrays are rejected.
// .npz: a zip archive of .npy files (np.savez: stored; np.savez_compressed:
// deflated), read through the zip central directory, zip64 sizes included.
#ifndef SQUEEZE_CORE_DATA_NUMPY_FILES_H_
#define SQUEEZE_CORE_DATA_NUMPY_FILES_H_

#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/model/tensor.h"

namespace squeeze::core::data {

// Parses a .npy file held in memory. INVALID_ARGUMENT naming `name` and the
// field (magic, version, header, descr, shape, data size) that is wrong.
absl::StatusOr<model::Tensor> ParseNpy(std::string_view bytes,
                                       const std::string& name);

// ReadFile + ParseNpy.
absl::StatusOr<model::Tensor> ReadNpyFile(const std::string& path);

// Parses a .npz archive held in memory: array name (the entry name without
// ".npy") -> tensor. INVALID_ARGUMENT naming `name`, the entry and the field
// for a damaged archive, an unsupported compression method (only stored and
// deflate are), entries that are not .npy files, and the ParseNpy errors.
absl::StatusOr<std::map<std::string, model::Tensor>> ParseNpz(
    std::string_view bytes, const std::string& name);

// ReadFile + ParseNpz.
absl::StatusOr<std::map<std::string, model::Tensor>> ReadNpzFile(
    const std::string& path);

}  // namespace squeeze::core::data

#endif  // SQUEEZE_CORE_DATA_NUMPY_FILES_H_
