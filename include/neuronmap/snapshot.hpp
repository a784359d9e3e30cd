// What one snapshot holds: per layer, the neuron statistics, the correlation matrix and the groups.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace neuronmap {

/// Counters of what the probes captured and what happened to it. Per layer, and summed per session.
struct Counters {
  std::int64_t captured_batches = 0;  ///< batches the probes saw during captured epochs
  std::int64_t dropped_batches = 0;   ///< batches dropped because the queue was full (drop_newest)
  std::int64_t skipped_batches = 0;   ///< batches not copied: max_batches reached, bad shape, ...
  std::int64_t rows = 0;              ///< sample rows accumulated into the statistics
  std::int64_t nonfinite_rows = 0;    ///< rows with NaN/Inf, skipped and counted
  std::int64_t errors = 0;            ///< probe callbacks that failed (the session's last_error says why)

  Counters& operator+=(const Counters& other) noexcept {
    captured_batches += other.captured_batches;
    dropped_batches += other.dropped_batches;
    skipped_batches += other.skipped_batches;
    rows += other.rows;
    nonfinite_rows += other.nonfinite_rows;
    errors += other.errors;
    return *this;
  }
};

/// A group of co-activating neurons in one layer (the original tool's PyTorchNeuronGroup).
struct Group {
  int group_id = 0;                      ///< position in the layer's group list (ordered by smallest neuron)
  std::string layer_name;
  std::vector<std::int32_t> neuron_indices;  ///< ascending
  double cohesion_score = 0.0;           ///< mean pairwise correlation inside, clipped to [0, 1]
  double mean_activation = 0.0;          ///< mean activation of the members over the captured samples
  std::vector<float> activation_pattern; ///< the group's mean activation per reservoir sample (may be empty)
  double importance = 0.0;               ///< sum of the members' |Taylor importance| (0 without gradients)
  std::string learning_phase;            ///< filled by the learning-pattern analysis (may be empty)
  std::string skill_category;            ///< filled by the learning-pattern analysis (may be empty)

  std::size_t group_size() const noexcept { return neuron_indices.size(); }
};

/// One layer in one snapshot.
struct LayerSnapshot {
  std::string name;
  std::vector<std::int64_t> output_shape;  ///< shape of the last captured output (empty: never fired)
  std::int64_t n_neurons = 0;
  std::int64_t samples = 0;                ///< rows in the statistics
  std::vector<double> mean, stddev, min, max;  ///< per neuron (population std, ddof = 0)
  std::vector<std::uint8_t> dead;          ///< 1 where the neuron never varied (max == min) or never fired
  std::vector<float> correlation;          ///< n_neurons x n_neurons row-major, empty if not stored
  std::int64_t gradient_samples = 0;       ///< rows of gradients seen (0 without Options::gradients)
  std::vector<double> grad_mean_abs;       ///< per neuron: mean |dLoss/dActivation| (empty without gradients)
  std::vector<double> taylor;              ///< per neuron: mean of activation x gradient (Molchanov et al. 2017)
  std::vector<std::int32_t> labels;        ///< per neuron: group id or -1 (ungrouped)
  std::vector<Group> groups;
  Counters counters;                       ///< what happened to this layer's batches in this snapshot's window

  std::int64_t dead_count() const noexcept {
    std::int64_t n = 0;
    for (auto d : dead) n += d != 0;
    return n;
  }
  double mean_cohesion() const noexcept {
    if (groups.empty()) return 0.0;
    double s = 0.0;
    for (const auto& g : groups) s += g.cohesion_score;
    return s / static_cast<double>(groups.size());
  }
};

/// Everything analysed at one snapshot epoch.
struct Snapshot {
  std::int64_t epoch = 0;
  double loss = 0.0;          ///< the loss given to end_epoch (NaN if none)
  double timestamp = 0.0;     ///< seconds since the Unix epoch when the snapshot was made
  std::vector<LayerSnapshot> layers;
};

/// One probed layer as the run file describes it.
struct LayerInfo {
  std::string name;
  std::string module_type;   ///< e.g. "torch::nn::LinearImpl"
  std::string reduction;     ///< how outputs become samples x neurons, in words
};

/// Run metadata, written once when the run file is created.
struct RunInfo {
  std::int64_t format_version = 0;
  std::string library_version;
  std::string torch_version;
  std::string device;
  std::string created;       ///< ISO 8601, UTC
  std::string options_json;  ///< the session's options
  std::vector<LayerInfo> layers;
};

}  // namespace neuronmap
