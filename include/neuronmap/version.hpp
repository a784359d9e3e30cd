// The library's version and the run-file format version it writes.
#pragma once

#define NEURONMAP_VERSION_MAJOR 0
#define NEURONMAP_VERSION_MINOR 1
#define NEURONMAP_VERSION_PATCH 0
#define NEURONMAP_VERSION_STRING "0.1.0"

namespace neuronmap {
/// Run files carry this number as the root attribute `format_version`; readers refuse newer ones.
inline constexpr int kFormatVersion = 5;
}  // namespace neuronmap
