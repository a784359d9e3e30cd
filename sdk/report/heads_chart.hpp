// The head-statistics heatmap of an attention layer: heads x (normalised entropy, concentration,
// collapsed fraction, weight on the keys at offsets -4 ... +4 from the query), one snapshot.
#pragma once

#include <cstdint>
#include <string>

#include "neuronmap/snapshot.hpp"
#include "report/report.hpp"

namespace neuronmap::report {

/// Draws `layer.heads` (not empty) to `path`.
void draw_heads_heatmap(const std::string& path, ImageFormat format, const LayerSnapshot& layer, std::int64_t epoch);

}  // namespace neuronmap::report
