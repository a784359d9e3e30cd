// The run file's skeleton, written once to `<path>.tmp` before RunWriter renames it into place and
// reopens it for SWMR appending (docs/FORMAT.md).
#pragma once

#include <string>

#include "neuronmap/snapshot.hpp"
#include "store/h5.hpp"

namespace neuronmap::detail {

/// File access properties for the run file: the latest format, and with `strong_close` every object
/// still open is closed with the file. Throws FileError.
h5::Handle file_access(bool strong_close);

/// Creates `tmp` with `info` as static metadata and every table of the schema, empty, and closes it.
/// Throws FileError.
void build_skeleton(const std::string& tmp, const RunInfo& info);

}  // namespace neuronmap::detail
