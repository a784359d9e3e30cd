// The pictures: per-layer correlation heatmap and scatter, all layers side by side, timelines.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "neuronmap/snapshot.hpp"
#include "report/embedding.hpp"
#include "report/colormap.hpp"
#include "report/layout.hpp"
#include "report/report.hpp"

namespace neuronmap::report {

/// Most pixels (and matrix cells) per side of one heatmap.
inline constexpr std::int64_t kMaxHeatmapSide = 1024;

struct SnapshotLabel {
  std::int64_t epoch = 0;
  double loss = 0.0;
};

void draw_layer_heatmap(const std::string& path, ImageFormat format, const LayerSnapshot& layer,
                        const GroupOrder& order, const SnapshotLabel& at);

/// `layers` may hold layers without a matrix or without neurons: their panels say so.
void draw_all_layers_heatmap(const std::string& path, ImageFormat format, const std::vector<const LayerSnapshot*>& layers,
                             const SnapshotLabel& at);

void draw_scatter(const std::string& path, ImageFormat format, const LayerSnapshot& layer, const GroupOrder& order,
                  const Embedding& embedding, const SnapshotLabel& at);

/// Per layer and snapshot values (NaN where a layer is absent from a snapshot).
struct TimelineData {
  std::vector<std::int64_t> epochs;
  std::vector<double> loss;
  std::vector<std::string> layers;
  std::vector<std::vector<double>> groups, cohesion, dead_rate;  ///< [layer][snapshot]
  std::vector<std::vector<double>> cka;                          ///< [layer][snapshot]: CKA to the previous one
  std::vector<std::string> phases;                               ///< per snapshot: the interval ending there
  std::vector<std::int64_t> event_counts;                        ///< per snapshot
  std::vector<std::int64_t> loss_epochs;                         ///< the loss of every epoch (may be empty)
  std::vector<double> losses;
  std::optional<std::int64_t> highlight_epoch;                   ///< drawn as a dashed line
};

/// A colour per learning phase (rapid, refinement, plateau, unstable; grey otherwise).
Rgb phase_color(const std::string& phase);
void draw_timeline(const std::string& path, ImageFormat format, const TimelineData& data);

}  // namespace neuronmap::report
