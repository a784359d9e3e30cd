// The learning analysis read from and written into snapshots: reservoir CKA between layers or snapshots,
// per-layer annotation (skills, loss correlation, dormant rates), the phase of an interval, events.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <unordered_map>

#include "learning/learning.hpp"

namespace neuronmap::detail::learning {

namespace {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();

std::int64_t reservoir_columns(const LayerSnapshot& layer) {
  const auto rows = static_cast<std::int64_t>(layer.reservoir_ids.size());
  if (rows == 0) {
    if (!layer.reservoir.empty()) throw std::invalid_argument("reservoir of " + layer.name + " has values but no sample ids");
    return layer.n_neurons;
  }
  if (static_cast<std::int64_t>(layer.reservoir.size()) != rows * layer.n_neurons) {
    throw std::invalid_argument("reservoir of " + layer.name + " is not reservoir_ids.size() x n_neurons");
  }
  return layer.n_neurons;
}

}  // namespace

double reservoir_cka(const LayerSnapshot& a, const LayerSnapshot& b) {
  const std::int64_t p = reservoir_columns(a), q = reservoir_columns(b);
  if (a.reservoir_ids == b.reservoir_ids) {  // the usual case: the same reservoir rows
    const auto n = static_cast<std::int64_t>(a.reservoir_ids.size());
    return linear_cka(MatrixView<float>{a.reservoir.data(), n, p}, MatrixView<float>{b.reservoir.data(), n, q});
  }
  std::unordered_map<std::int64_t, std::size_t> row_in_b;
  for (std::size_t r = 0; r < b.reservoir_ids.size(); ++r) row_in_b.emplace(b.reservoir_ids[r], r);
  std::unordered_map<std::int64_t, char> taken;
  std::vector<float> x, y;
  std::int64_t n = 0;
  for (std::size_t r = 0; r < a.reservoir_ids.size(); ++r) {
    const auto id = a.reservoir_ids[r];
    const auto it = row_in_b.find(id);
    if (it == row_in_b.end() || !taken.emplace(id, 1).second) continue;
    x.insert(x.end(), a.reservoir.begin() + static_cast<std::ptrdiff_t>(r * p),
             a.reservoir.begin() + static_cast<std::ptrdiff_t>((r + 1) * p));
    y.insert(y.end(), b.reservoir.begin() + static_cast<std::ptrdiff_t>(it->second * q),
             b.reservoir.begin() + static_cast<std::ptrdiff_t>((it->second + 1) * q));
    ++n;
  }
  if (n < 2) return nan_value;
  return linear_cka(MatrixView<float>{x.data(), n, p}, MatrixView<float>{y.data(), n, q});
}

void annotate_layer(LayerSnapshot& layer, const std::vector<std::string>& tag_names, const LearningOptions& options) {
  // Tags without a name are user input we cannot interpret: untagged rather than an error on a worker.
  std::vector<std::int32_t> tags = layer.reservoir_tags;
  for (auto& t : tags) {
    if (t < 0 || t >= static_cast<std::int32_t>(tag_names.size())) t = -1;
  }
  for (auto& g : layer.groups) {
    if (!g.activation_pattern.empty() && g.activation_pattern.size() == tags.size()) {
      const Selectivity s = class_selectivity(g.activation_pattern, tags, tag_names, options);
      g.selectivity = s.index;
      g.skill_category = s.category;
    } else {
      g.selectivity = 0.0;
      g.skill_category = "untagged";
    }
    g.loss_correlation = !g.activation_pattern.empty() && g.activation_pattern.size() == layer.reservoir_loss.size()
                             ? loss_correlation(g.activation_pattern, layer.reservoir_loss)
                             : 0.0;
  }
  const bool have_mean_abs = !layer.mean_abs.empty();
  const DormantNeurons dormant = dormant_neurons(have_mean_abs ? layer.mean_abs : mean_abs_from_moments(layer), options);
  layer.dead_rate = dormant.dead_rate;
  layer.dormant_rate = dormant.dormant_rate;
}

double min_layer_cka(const Snapshot& snapshot) noexcept {
  double lowest = nan_value;
  for (const auto& layer : snapshot.layers) {
    if (std::isfinite(layer.cka_previous) && !(layer.cka_previous >= lowest)) lowest = layer.cka_previous;
  }
  return lowest;
}

LearningPhase snapshot_phase(const Snapshot& previous, const Snapshot& current, const LearningOptions& options) noexcept {
  PhaseInput input;
  input.previous_epoch = previous.epoch;
  input.epoch = current.epoch;
  input.previous_loss = previous.loss;
  input.loss = current.loss;
  input.cka = min_layer_cka(current);
  input.previous_cka = min_layer_cka(previous);
  return classify_phase(input, options);
}

Event to_event(const LearningEvent& event) {
  Event out;
  out.epoch = event.epoch;
  out.layer = event.layer;
  out.kind = to_string(event.kind);
  out.lineages = event.lineage_ids;
  out.strength = event.strength;
  out.skill_category = event.skill_category;
  out.loss_change = event.loss_change;
  return out;
}

LayerStep LayerLearning::update(std::int64_t epoch, double loss, LayerSnapshot& layer) {
  LayerStep step = update(epoch, loss, layer.groups, layer.dormant_rate, layer.cka_previous);
  for (std::size_t k = 0; k < layer.groups.size() && k < step.lineage_ids.size(); ++k) {
    layer.groups[k].lineage_id = step.lineage_ids[k];
  }
  return step;
}

}  // namespace neuronmap::detail::learning
