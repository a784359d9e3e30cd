// The original tool's per-sample learning events (PyTorchLearningEvent): on which samples which groups
// of a layer fire strongly. Not the temporal events of learning.hpp, which compare snapshots.
#pragma once

#include <cstdint>
#include <vector>

#include "neuronmap/snapshot.hpp"

namespace neuronmap::detail::learning {

/// One event per sample on which at least one group is activated: the mean activation of the group's
/// members exceeds the sample's mean + `sigma` x its standard deviation over all the layer's neurons
/// (unbiased, n_neurons - 1, as torch.std; 0 for one neuron). NaN values activate nothing.
struct SampleEvents {
  std::vector<std::int64_t> samples;                 ///< rows with an event, ascending
  std::vector<std::vector<std::int32_t>> activated;  ///< per event: positions in `groups` of the activated ones
  std::vector<double> strength;                      ///< per event: the largest group mean on that row
};

/// `rows` is row-major n_rows x n_neurons. Throws UsageError for a member outside [0, n_neurons) or
/// an empty group.
SampleEvents sample_events(const float* rows, std::int64_t n_rows, std::int64_t n_neurons,
                           const std::vector<std::vector<std::int32_t>>& groups, double sigma = 0.5);
SampleEvents sample_events(const double* rows, std::int64_t n_rows, std::int64_t n_neurons,
                           const std::vector<std::vector<std::int32_t>>& groups, double sigma = 0.5);

/// The same on what a snapshot keeps: the layer's sample rows (its reservoir, in sample order) and its
/// groups. No rows or no groups: no events.
SampleEvents sample_events(const LayerSnapshot& layer, double sigma = 0.5);

}  // namespace neuronmap::detail::learning
