// What one snapshot holds: per layer, the neuron statistics, the correlation matrix and the groups
// (Group is in group.hpp).
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "neuronmap/group.hpp"

namespace neuronmap {

/// Counters of what the probes captured and what happened to it. Per layer, and summed per session.
struct Counters {
  std::int64_t captured_batches = 0;  ///< batches the probes saw during captured epochs
  std::int64_t dropped_batches = 0;   ///< batches dropped because the queue was full (drop_newest)
  std::int64_t skipped_batches = 0;   ///< batches not copied: max_batches reached, bad shape, ...
  std::int64_t rows = 0;              ///< sample rows accumulated into the statistics
  std::int64_t nonfinite_rows = 0;    ///< rows with NaN/Inf, skipped and counted
  std::int64_t errors = 0;  ///< failures while capturing: probe callbacks that failed, batches a worker
                            ///< failed on (the user transform or the accumulation threw) and batch buffers
                            ///< that could not be allocated; the session's last_error() keeps the first message
  std::int64_t budget_skipped_batches = 0;  ///< batches left out to hold Options::overhead_budget

  Counters& operator+=(const Counters& other) noexcept {
    captured_batches += other.captured_batches;
    dropped_batches += other.dropped_batches;
    skipped_batches += other.skipped_batches;
    rows += other.rows;
    nonfinite_rows += other.nonfinite_rows;
    errors += other.errors;
    budget_skipped_batches += other.budget_skipped_batches;
    return *this;
  }
};

/// One attention head over every (sample, query) of a snapshot's window (docs/HEADS.md). A query's
/// keys are those with a nonzero weight (masked keys get exactly 0); entropy, concentration and the
/// collapsed fraction are over the queries with at least two keys.
struct HeadStatistics {
  static constexpr int kOffsets = 4;  ///< offset_weight covers key - query = -kOffsets ... +kOffsets
  std::int64_t queries = 0;           ///< (sample, query) pairs seen
  double entropy_mean = 0.0;          ///< entropy per query / log(its keys); 0 with one key
  double entropy_std = 0.0;           ///< spread of that over the queries (population)
  double distance_mean = std::numeric_limits<double>::quiet_NaN();  ///< mean of sum_j w_ij |i - j| (self-attention: T == S)
  std::vector<double> offset_weight;  ///< 2 * kOffsets + 1 values: mean weight on key i + o over the queries
                                      ///< that have that key (NaN where none); [kOffsets - 1] is the previous token
  double concentration = 0.0;         ///< mean of the largest weight per query
  double collapsed_fraction = 0.0;    ///< fraction of queries whose largest weight is >= 0.95
  bool uniform = false;               ///< entropy_mean >= 0.95
  bool collapsed = false;             ///< collapsed_fraction >= 0.9
  std::string role;                   ///< previous-token, self, uniform, collapsed or mixed (docs/HEADS.md)

  double previous_token() const noexcept { return offset_weight.empty() ? 0.0 : offset_weight[kOffsets - 1]; }
};

/// The role a head plays, from its statistics: none (no queries), collapsed, uniform, previous-token
/// (mean weight on key i - 1 >= 0.5), self (on key i >= 0.5), else mixed.
inline const char* head_role(const HeadStatistics& h) noexcept {
  if (h.queries == 0) return "none";
  if (h.collapsed) return "collapsed";
  if (h.uniform) return "uniform";
  const auto k = static_cast<std::size_t>(HeadStatistics::kOffsets);
  if (h.offset_weight.size() > k && h.offset_weight[k - 1] >= 0.5) return "previous-token";
  if (h.offset_weight.size() > k && h.offset_weight[k] >= 0.5) return "self";
  return "mixed";
}

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
  std::vector<double> mean_abs;            ///< per neuron: mean |activation| (dormant-neuron scores)
  double dead_rate = 0.0;                  ///< fraction of neurons with dormant score <= 0 (Sokar et al. 2023)
  double dormant_rate = 0.0;               ///< fraction with dormant score <= LearningOptions::dormant_tau (0.025)
  double cka_previous = std::numeric_limits<double>::quiet_NaN();  ///< linear CKA to the previous snapshot
  /// The reservoir: a uniform sample of rows (reservoir_ids.size() x n_neurons, row-major), with each
  /// row's sample id, tag (-1 untagged) and per-sample loss (NaN if not observed).
  std::vector<float> reservoir;
  std::vector<std::int64_t> reservoir_ids;
  std::vector<std::int32_t> reservoir_tags;
  std::vector<float> reservoir_loss;
  /// The layer's outputs on the reference batch (Session::set_reference) at this snapshot:
  /// reference_rows x n_neurons, row-major; empty without a reference batch.
  std::vector<float> reference;
  std::int64_t reference_rows = 0;
  std::vector<std::int32_t> labels;        ///< per neuron: group id or -1 (ungrouped)
  std::vector<Group> groups;
  Counters counters;                       ///< what happened to this layer's batches in this snapshot's window
  /// Attention layers (LayerLayout::attention_heads): per head; the neurons are the heads. Else empty.
  std::vector<HeadStatistics> heads;

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

/// A learning event (docs/LEARNING.md): a group transition, a cohesion jump or a dormant-rate change.
struct Event {
  std::int64_t epoch = 0;
  std::string layer;
  std::string kind;                   ///< emerged, split, merged, dissolved, grew, shrank, cohesion_jump, dormant_change
  std::vector<std::int64_t> lineages; ///< lineage ids involved
  double strength = 0.0;              ///< in [0, 1]
  std::string skill_category;
  double loss_change = 0.0;           ///< loss at this snapshot minus loss at the previous one
};

/// Everything analysed at one snapshot epoch.
struct Snapshot {
  std::int64_t epoch = 0;
  double loss = 0.0;          ///< the loss given to end_epoch (NaN if none)
  double timestamp = 0.0;     ///< seconds since the Unix epoch when the snapshot was made
  std::vector<LayerSnapshot> layers;
  std::string phase;                  ///< learning phase of the interval ending here (docs/LEARNING.md)
  std::vector<Event> events;          ///< events detected at this snapshot
  std::vector<double> layer_cka;      ///< L x L linear CKA between the layers on the reservoir (row-major)
  /// The loss of every epoch since the previous snapshot (this one included), from end_epoch.
  std::vector<std::int64_t> loss_epochs;
  std::vector<double> losses;
};

/// One probed layer as the run file describes it (RunInfo::layers). Before attach the same layer is a
/// LayerDescription (layers.hpp); at each snapshot its statistics are a LayerSnapshot.
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
  std::vector<std::string> tag_names;  ///< names of the sample tags (Options::tag_names)
  std::vector<LayerInfo> layers;
};

}  // namespace neuronmap
