// The original tool's pictures, drawn from the samples a layer keeps (its reservoir rows): activations
// by group, samples in the PCA of activations, group size against cohesion, and groups as a network.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "neuronmap/snapshot.hpp"
#include "report/charts.hpp"
#include "report/layout.hpp"
#include "report/report.hpp"

namespace neuronmap::report {

/// Sample rows drawn at most in the activation heatmap; more are averaged in consecutive blocks.
inline constexpr std::int64_t kMaxHeatmapRows = 720;
/// Neurons the network picture places at most (the largest groups first).
inline constexpr std::int64_t kMaxNetworkNeurons = 600;
/// Edges the network picture draws at most (the strongest first).
inline constexpr std::int64_t kMaxNetworkEdges = 4000;
/// |r| from which two neurons are joined in the network picture.
inline constexpr double kNetworkEdgeThreshold = 0.5;

/// The layer's sample rows (row-major, n_neurons wide); rows == 0 when the snapshot keeps none.
struct SampleRows {
  const float* data = nullptr;
  std::int64_t rows = 0, cols = 0;
};
SampleRows sample_rows(const LayerSnapshot& layer);

/// Per sample and group: the mean activation of the group's members (rows x groups, row-major).
std::vector<double> group_means(const SampleRows& rows, const std::vector<Group>& groups);

/// Per sample: the position in `groups` of the group with the largest member mean (-1 without groups).
std::vector<std::int32_t> most_active_group(const std::vector<double>& means, std::int64_t rows, std::int64_t groups);

/// `pytorch_groups_heatmap_<layer>`: activations, samples x neurons, neurons ordered by group, a group
/// colour bar above. Needs sample rows.
void draw_activation_heatmap(const std::string& path, ImageFormat format, const LayerSnapshot& layer,
                             const GroupOrder& order, const SnapshotLabel& at);

/// `pytorch_groups_scatter_<layer>`: the samples in the PCA of their activations, coloured by their most
/// active group, each group's centre (the mean of its samples) marked. Needs at least 3 sample rows.
void draw_sample_scatter(const std::string& path, ImageFormat format, const LayerSnapshot& layer,
                         const SnapshotLabel& at, std::uint64_t seed);

/// `pytorch_all_layers_heatmap`: per layer, its groups by size (largest first) with their cohesion as colour.
void draw_size_cohesion(const std::string& path, ImageFormat format, const std::vector<const LayerSnapshot*>& layers,
                        const SnapshotLabel& at);

/// `pytorch_groups_network_<layer>`: the grouped neurons as a graph, each group on a circle of its own,
/// edges where |r| >= kNetworkEdgeThreshold. Needs the correlation matrix.
void draw_network(const std::string& path, ImageFormat format, const LayerSnapshot& layer, const SnapshotLabel& at);

}  // namespace neuronmap::report
