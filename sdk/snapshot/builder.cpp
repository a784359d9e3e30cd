// The snapshot builder: per-layer statistics and groups, the reservoir rows' observations, then the
// learning analysis across snapshots (formulas: docs/ANALYSIS.md, docs/LEARNING.md).
#include "snapshot/builder.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>
#include <tbb/parallel_for.h>

#include "analysis/correlation.hpp"
#include "analysis/grouping.hpp"
#include "analysis/moments.hpp"
#include "learning/head_events.hpp"
#include "stream/reservoir.hpp"

namespace neuronmap::detail {
namespace {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();

void analyse_layer(LayerAccumulator& acc, const std::string& name, const Options& options, LayerSnapshot& out) {
  out.name = name;
  out.output_shape = acc.output_shape;
  if (!acc.moments) {
    // Nothing captured for this layer in this window (it never fired, or every batch was dropped).
    out.n_neurons = 0;
    return;
  }
  if (!acc.heads.empty()) out.heads = acc.heads.finish();
  const Moments& m = *acc.moments;
  const auto n = m.n_neurons();
  const auto neurons = static_cast<std::size_t>(n);
  out.n_neurons = n;
  out.samples = m.count();
  const Correlation corr = correlation_from_moments(m);
  out.mean.assign(m.mean().data(), m.mean().data() + n);
  out.stddev.assign(corr.stddev.data(), corr.stddev.data() + n);
  out.min.resize(neurons);
  out.max.resize(neurons);
  for (std::int64_t i = 0; i < n; ++i) {
    out.min[static_cast<std::size_t>(i)] = m.count() > 0 ? m.min()(i) : nan_value;
    out.max[static_cast<std::size_t>(i)] = m.count() > 0 ? m.max()(i) : nan_value;
  }
  out.dead = corr.dead;
  if (options.store_correlation()) {
    out.correlation.resize(neurons * neurons);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j) out.correlation[static_cast<std::size_t>(i * n + j)] = static_cast<float>(corr.r(i, j));
  }
  if (acc.gradients.rows > 0 && acc.gradients.sum_abs.size() == neurons) {
    const auto rows = static_cast<double>(acc.gradients.rows);
    out.gradient_samples = acc.gradients.rows;
    for (std::size_t i = 0; i < neurons; ++i) {
      out.grad_mean_abs.push_back(acc.gradients.sum_abs[i] / rows);
      out.taylor.push_back(acc.gradients.sum_product[i] / rows);
    }
  }
  const GroupingResult grouping = group_neurons(corr, options.grouping());
  out.labels = grouping.labels;
  if (m.count() > 0 && acc.sum_abs.size() == neurons) {
    for (std::size_t i = 0; i < neurons; ++i) out.mean_abs.push_back(acc.sum_abs[i] / static_cast<double>(m.count()));
  }
  auto [rows, ids] = acc.reservoir.sorted_rows();
  const std::int64_t kept = acc.reservoir.size();
  for (std::size_t g = 0; g < grouping.groups.size(); ++g) {
    Group group;
    group.group_id = static_cast<int>(g);
    group.layer_name = name;
    group.neuron_indices = grouping.groups[g];
    group.cohesion_score = grouping.cohesion[g];
    group.min_member_correlation = grouping.min_member_correlation[g];
    group.loose = group.cohesion_score < options.grouping().threshold;
    const auto members = static_cast<double>(group.neuron_indices.size());
    double sum = 0.0;
    for (auto i : group.neuron_indices) sum += m.mean()(i);
    group.mean_activation = sum / members;
    group.activation_pattern.resize(static_cast<std::size_t>(kept));
    for (std::int64_t r = 0; r < kept; ++r) {
      double row_sum = 0.0;
      for (auto i : group.neuron_indices) row_sum += rows[static_cast<std::size_t>(r * n + i)];
      group.activation_pattern[static_cast<std::size_t>(r)] = static_cast<float>(row_sum / members);
    }
    for (auto i : group.neuron_indices) {
      if (!out.taylor.empty()) group.importance += std::abs(out.taylor[static_cast<std::size_t>(i)]);
    }
    out.groups.push_back(std::move(group));
  }
  out.reservoir = std::move(rows);
  out.reservoir_ids = std::move(ids);
}

// Every reservoir row gets a tag (-1: none) and a loss (NaN: none), in the order of reservoir_ids.
void attach_observations(const std::unordered_map<std::int64_t, Observed>& observed, LayerSnapshot& layer) {
  const auto kept = layer.reservoir_ids.size();
  layer.reservoir_tags.assign(kept, -1);
  layer.reservoir_loss.assign(kept, std::numeric_limits<float>::quiet_NaN());
  for (std::size_t k = 0; k < kept; ++k) {
    if (const auto found = observed.find(layer.reservoir_ids[k]); found != observed.end()) {
      layer.reservoir_tags[k] = found->second.tag;
      layer.reservoir_loss[k] = found->second.loss;
    }
  }
}

// Lineages, events, skills, dormant rates, CKA and the phase. Temporal CKA uses the reference batch
// (the same inputs at both snapshots); CKA between layers uses the reservoir rows both layers hold
// (the same samples of the same forward passes). A failing layer is reported and left unannotated.
void learn(const std::vector<ReferenceRows>& reference, const Options& options, LearningHistory& history,
           Snapshot& snapshot, std::vector<std::string>& problems) {
  const learning::LearningOptions learning_options;
  const auto n_layers = snapshot.layers.size();
  for (std::size_t l = 0; l < n_layers; ++l) {
    auto& layer = snapshot.layers[l];
    try {
      learning::annotate_layer(layer, options.tag_names(), learning_options);
      if (l < reference.size() && !reference[l].rows.empty()) {
        const auto& now = reference[l];
        const auto& before = history.previous_reference[l];
        if (!before.rows.empty() && before.rows.size() == now.rows.size()) {
          const std::int64_t rows = static_cast<std::int64_t>(now.rows.size()) / now.cols;
          layer.cka_previous = learning::linear_cka(learning::MatrixView<float>{before.rows.data(), rows, before.cols},
                                                    learning::MatrixView<float>{now.rows.data(), rows, now.cols});
        }
        history.previous_reference[l] = now;
        // Stored with the snapshot (for `neuronmap compare`) when its width is the layer's.
        if (now.cols == layer.n_neurons && now.cols > 0) {
          layer.reference = now.rows;
          layer.reference_rows = static_cast<std::int64_t>(now.rows.size()) / now.cols;
        }
      }
    } catch (const std::exception& e) {
      problems.push_back(fmt::format("learning analysis, layer '{}': {}", layer.name, e.what()));
    }
  }
  const auto& previous = history.previous;
  if (previous) snapshot.phase = learning::to_string(learning::snapshot_phase(*previous, snapshot, learning_options));
  const double loss_change = previous ? snapshot.loss - previous->loss : nan_value;
  for (std::size_t l = 0; l < n_layers; ++l) {
    auto& layer = snapshot.layers[l];
    try {
      const auto step = history.layers[l].update(snapshot.epoch, snapshot.loss, layer);
      for (const auto& e : step.events) {
        Event event = learning::to_event(e);
        event.loss_change = loss_change;
        snapshot.events.push_back(std::move(event));
      }
      // The baseline snapshot has no interval behind it: its groups' phase is "unknown" (docs/LEARNING.md).
      for (auto& group : layer.groups) group.learning_phase = snapshot.phase.empty() ? "unknown" : snapshot.phase;
    } catch (const std::exception& e) {
      problems.push_back(fmt::format("lineages, layer '{}': {}", layer.name, e.what()));
    }
  }
  for (std::size_t l = 0; l < n_layers; ++l) {
    const auto* before = previous && l < previous->layers.size() ? &previous->layers[l].heads : nullptr;
    for (auto& event : neuronmap::learning::head_events(snapshot.layers[l], before, snapshot.epoch)) {
      event.loss_change = loss_change;
      snapshot.events.push_back(std::move(event));
    }
  }
  snapshot.layer_cka.assign(n_layers * n_layers, nan_value);
  for (std::size_t a = 0; a < n_layers; ++a) {
    for (std::size_t b = a; b < n_layers; ++b) {
      double cka = nan_value;
      try {
        if (a == b) cka = snapshot.layers[a].reservoir_ids.empty() ? cka : 1.0;
        else cka = learning::reservoir_cka(snapshot.layers[a], snapshot.layers[b]);
      } catch (const std::exception&) {
      }
      snapshot.layer_cka[a * n_layers + b] = snapshot.layer_cka[b * n_layers + a] = cka;
    }
  }
  Snapshot light;
  light.epoch = snapshot.epoch;
  light.loss = snapshot.loss;
  light.layers.resize(n_layers);
  for (std::size_t l = 0; l < n_layers; ++l) {
    light.layers[l].cka_previous = snapshot.layers[l].cka_previous;
    light.layers[l].heads = snapshot.layers[l].heads;
  }
  history.previous = std::move(light);
}

}  // namespace

LearningHistory::LearningHistory(const std::vector<std::string>& layer_names) : previous_reference(layer_names.size()) {
  layers.reserve(layer_names.size());
  for (const auto& name : layer_names) layers.emplace_back(name);
}

std::unordered_map<std::int64_t, Observed> observe_reservoir_rows(const LayerAccumulator& layer,
                                                                  const std::vector<ForwardObservation>& forwards,
                                                                  int rank, int world) {
  std::unordered_map<std::int64_t, Observed> observed;
  if (!layer.moments || forwards.empty()) return observed;
  for (const std::int64_t id : layer.reservoir.sorted_rows().second) {
    const SampleIdParts parts = split_sample_id(id);
    if ((parts.ordinal - rank) % world != 0) continue;  // another rank's row
    const std::int64_t ordinal = (parts.ordinal - rank) / world;
    if (ordinal < 0 || static_cast<std::size_t>(ordinal) >= forwards.size()) continue;
    const auto batch_rows = layer.batch_rows.find(ordinal);
    if (batch_rows == layer.batch_rows.end() || batch_rows->second <= 0) continue;
    const auto& forward = forwards[static_cast<std::size_t>(ordinal)];
    const auto samples = static_cast<std::int64_t>(std::max(forward.tags.size(), forward.loss.size()));
    const auto sample = static_cast<std::size_t>(parts.row * samples / batch_rows->second);
    Observed o;
    if (sample < forward.tags.size()) o.tag = forward.tags[sample];
    if (sample < forward.loss.size()) o.loss = forward.loss[sample];
    observed.emplace(id, o);
  }
  return observed;
}

BuiltSnapshot build_snapshot(SealedWindow&& window, LearningHistory& history, const Options& options) {
  const auto n_layers = history.layers.size();
  if (window.layers.size() != n_layers) {
    throw std::invalid_argument(fmt::format("a window of {} layers for a session of {}", window.layers.size(), n_layers));
  }
  BuiltSnapshot built;
  Snapshot& snapshot = built.snapshot;
  snapshot.epoch = window.epoch;
  snapshot.loss = window.loss;
  snapshot.timestamp = window.timestamp;
  snapshot.loss_epochs = std::move(window.loss_epochs);
  snapshot.losses = std::move(window.losses);
  snapshot.layers.resize(n_layers);
  for (std::size_t l = 0; l < n_layers && l < window.counters.size(); ++l) snapshot.layers[l].counters = window.counters[l];

  tbb::parallel_for(std::size_t{0}, n_layers, [&](std::size_t l) {
    analyse_layer(window.layers[l], history.layers[l].layer(), options, snapshot.layers[l]);
  });
  window.observed.resize(n_layers);
  for (std::size_t l = 0; l < n_layers; ++l) {
    auto& observed = window.observed[l];
    if (!window.observations.empty()) observed.merge(observe_reservoir_rows(window.layers[l], window.observations));
    attach_observations(observed, snapshot.layers[l]);
  }
  learn(window.reference, options, history, snapshot, built.problems);
  return built;
}

}  // namespace neuronmap::detail
