// Deterministic run content for the store tests: snapshot i is a pure function of i, so a file written
// by another (killed) process can be checked bit for bit.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "neuronmap/snapshot.hpp"

namespace neuronmap::test {

inline std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// A reproducible stream of numbers seeded by (snapshot, layer, purpose).
class Numbers {
 public:
  Numbers(std::uint64_t a, std::uint64_t b, std::uint64_t c) : state_(mix(mix(mix(a) ^ b) ^ c)) {}
  std::uint64_t next() { return state_ = mix(state_); }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }          // [0, 1)
  double value() { return (uniform() - 0.5) * std::ldexp(1.0, static_cast<int>(next() % 20) - 10); }
  std::int64_t below(std::int64_t n) { return n <= 0 ? 0 : static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(n)); }

 private:
  std::uint64_t state_;
};

inline RunInfo sample_info() {
  RunInfo info;
  info.library_version = "0.1.0";
  info.torch_version = "1.13.0";
  info.device = "cpu";
  info.created = "2026-01-02T03:04:05Z";
  info.options_json = R"({"every": 5, "file": "run.h5", "threshold": 0.6})";
  info.layers = {{"conv1", "torch::nn::Conv2dImpl", "spatial mean over [H, W]"},
                 {"fc1", "torch::nn::LinearImpl", "rows as samples"},
                 {"fc2", "torch::nn::LinearImpl", "rows as samples"},
                 {"head", "torch::nn::LinearImpl", "rows as samples"}};
  info.tag_names = {"cat", "dog", "", "b\xc3\xa4r"};  // an empty name and UTF-8 too
  return info;
}

/// The fields format_version 2 added to a layer, from their own number stream (purpose 2) so that the
/// version 1 fields stay what tests/store/data/run_v1.h5.gz holds.
inline void add_version2_fields(std::int64_t index, int which, LayerSnapshot& l) {
  Numbers r(static_cast<std::uint64_t>(index), static_cast<std::uint64_t>(which), 2);
  const auto n = static_cast<std::size_t>(l.n_neurons);
  if ((index + which) % 3 != 0)  // empty on some layers
    for (std::size_t j = 0; j < n; ++j) l.mean_abs.push_back(std::fabs(r.value()));
  l.dead_rate = r.uniform();
  l.dormant_rate = l.dead_rate + r.uniform();
  // NaN at the first snapshot (no previous one), -0.0 once.
  l.cka_previous = index == 0 ? std::numeric_limits<double>::quiet_NaN() : (which == 3 && index == 1) ? -0.0 : r.uniform();
  const std::int64_t rows = which == 2 || n == 0 ? 0 : 1 + r.below(6);
  for (std::int64_t k = 0; k < rows; ++k) {
    for (std::size_t j = 0; j < n; ++j) l.reservoir.push_back(static_cast<float>(r.value()));
    l.reservoir_ids.push_back((static_cast<std::int64_t>(r.below(1000)) << 24) | k);
    if (which != 3) {  // layer 3: ids without tags and losses (nothing observed)
      l.reservoir_tags.push_back(static_cast<std::int32_t>(r.below(5)) - 1);  // -1: untagged
      l.reservoir_loss.push_back(k == 1 ? std::numeric_limits<float>::quiet_NaN() : static_cast<float>(r.uniform()));
    }
  }
  for (std::size_t g = 0; g < l.groups.size(); ++g) {
    auto& group = l.groups[g];
    group.lineage_id = g == 0 ? -1 : 1000 * index + static_cast<std::int64_t>(g);
    group.selectivity = r.uniform();
    group.loss_correlation = g == 2 ? std::numeric_limits<double>::quiet_NaN() : 2.0 * r.uniform() - 1.0;
  }
}

/// The fields format_version 3 added to a layer (the reference batch's rows), from their own number
/// stream (purpose 4) so that the older fields stay what tests/store/data/run_v{1,2}.h5.gz hold.
inline void add_version3_fields(std::int64_t index, int which, LayerSnapshot& l) {
  Numbers r(static_cast<std::uint64_t>(index), static_cast<std::uint64_t>(which), 4);
  if (which == 2 || l.n_neurons == 0) return;  // no reference rows on some layers
  l.reference_rows = 1 + r.below(4);
  for (std::int64_t k = 0; k < l.reference_rows * l.n_neurons; ++k) l.reference.push_back(static_cast<float>(r.value()));
  if (which == 0) l.reference[0] = std::numeric_limits<float>::quiet_NaN();
}

/// The fields format_version 4 added to a layer's groups, from their own number stream (purpose 5) so
/// that the older fields stay what tests/store/data/run_v{1,2,3}.h5.gz hold: a NaN and a -0.0 too.
inline void add_version4_fields(std::int64_t index, int which, LayerSnapshot& l) {
  Numbers r(static_cast<std::uint64_t>(index), static_cast<std::uint64_t>(which), 5);
  for (std::size_t g = 0; g < l.groups.size(); ++g) {
    auto& group = l.groups[g];
    group.min_member_correlation = 2.0 * r.uniform() - 1.0;
    if (index == 1 && g == 0) group.min_member_correlation = std::numeric_limits<double>::quiet_NaN();
    if (index == 2 && g == 0) group.min_member_correlation = -0.0;
    group.loose = r.below(2) == 1;
  }
}

/// What format_version 5 added: the batches left out for the overhead budget, on every layer (number
/// stream 7), and head statistics on layer 2 only (one head per neuron, a NaN distance on odd snapshots
/// as for cross-attention; number stream 6).
inline void add_version5_fields(std::int64_t index, int which, LayerSnapshot& l) {
  l.counters.budget_skipped_batches =
      Numbers(static_cast<std::uint64_t>(index), static_cast<std::uint64_t>(which), 7).below(5);
  if (which != 2) return;
  Numbers r(static_cast<std::uint64_t>(index), static_cast<std::uint64_t>(which), 6);
  for (std::int64_t h = 0; h < l.n_neurons; ++h) {
    HeadStatistics s;
    s.queries = 1 + r.below(1000);
    s.entropy_mean = r.uniform();
    s.entropy_std = r.uniform();
    s.distance_mean = index % 2 == 1 ? std::numeric_limits<double>::quiet_NaN() : r.uniform() * 10;
    s.concentration = r.uniform();
    s.collapsed_fraction = r.uniform();
    s.uniform = s.entropy_mean >= 0.95;
    s.collapsed = s.collapsed_fraction >= 0.9;
    for (int k = 0; k < 2 * HeadStatistics::kOffsets + 1; ++k) s.offset_weight.push_back(r.uniform());
    s.role = head_role(s);
    l.heads.push_back(std::move(s));
  }
}

/// The snapshot-level fields format_version 2 added: phase, events, layer CKA and the loss curve.
inline void add_version2_fields(std::int64_t index, Snapshot& s) {
  Numbers r(static_cast<std::uint64_t>(index), 99, 3);
  static const char* const phases[] = {"", "rapid_learning", "plateau", "unstable"};
  s.phase = phases[index % 4];
  if (index == 2) s.phase = "a phase name well over thirty-two bytes long, \xc3\xa9t\xc3\xa9";  // not cut
  static const char* const kinds[] = {"emerged", "split", "merged", "dissolved", "cohesion_jump", "dormant_change"};
  const std::int64_t n_events = index % 4;  // none, one, two, three
  for (std::int64_t k = 0; k < n_events; ++k) {
    Event e;
    e.epoch = s.epoch;
    e.layer = k == 2 ? "extra.not_in_info" : "fc1";
    e.kind = kinds[(index + k) % 6];
    for (std::int64_t m = 0; m < k + (index % 2); ++m) e.lineages.push_back(1000 * index + 7 * m + k);  // 0 to 3 ids
    e.strength = r.uniform();
    if (k != 1) e.skill_category = "dog";
    e.loss_change = k == 2 ? std::numeric_limits<double>::quiet_NaN() : r.uniform() - 0.5;
    s.events.push_back(std::move(e));
  }
  if (index % 3 != 2) {  // empty on some snapshots
    const auto n = s.layers.size();
    s.layer_cka.resize(n * n);
    for (std::size_t a = 0; a < n; ++a)
      for (std::size_t b = 0; b < n; ++b) s.layer_cka[a * n + b] = a == b ? 1.0 : r.uniform();
    if (n > 3) s.layer_cka[3] = std::numeric_limits<double>::quiet_NaN();
  }
  if (index % 5 != 4)  // the loss of every epoch since the previous snapshot; none on some
    for (std::int64_t e = 5 * index + 1; e <= 5 * (index + 1); ++e) {
      s.loss_epochs.push_back(e);
      s.losses.push_back(e % 3 == 0 ? std::numeric_limits<double>::quiet_NaN() : 1.0 / static_cast<double>(e));
    }
}

inline LayerSnapshot sample_layer(std::int64_t index, int which, const std::string& name, std::int64_t n,
                                  bool with_correlation, int max_groups) {
  Numbers r(static_cast<std::uint64_t>(index), static_cast<std::uint64_t>(which), 1);
  LayerSnapshot l;
  l.name = name;
  l.n_neurons = n;
  if (n > 0) l.output_shape = {32, n, 1 + r.below(7), 1 + r.below(7)};
  if (which == 1 && n > 0) l.output_shape = {2, 3, 4, 5, 6, 7, 8, n};  // the most dimensions stored
  l.samples = n > 0 ? 32 * (index + 1) : 0;
  for (std::int64_t j = 0; j < n; ++j) {
    double a = r.value(), b = r.value();
    l.mean.push_back(a);
    l.stddev.push_back(std::fabs(b));
    l.min.push_back(a - 1.0 - r.uniform());
    l.max.push_back(a + 1.0 + r.uniform());
    l.dead.push_back(static_cast<std::uint8_t>(r.below(5) == 0));
    l.labels.push_back(-1);
  }
  // A NaN and signed zero must come back with the same bits.
  if (n > 2) {
    l.min[1] = std::numeric_limits<double>::quiet_NaN();
    l.max[2] = -0.0;
  }
  // Gradient statistics on some layers only (they need Options::gradients).
  if (which == 1 || (which == 0 && index % 2 == 1)) {
    l.gradient_samples = l.samples / 2;
    for (std::int64_t j = 0; j < n; ++j) l.grad_mean_abs.push_back(std::fabs(r.value()));
    if (which == 1)
      for (std::int64_t j = 0; j < n; ++j) l.taylor.push_back(r.value());
  }
  if (with_correlation && n > 0) {
    l.correlation.resize(static_cast<std::size_t>(n * n));
    for (auto& c : l.correlation) c = static_cast<float>(r.uniform() * 2.0 - 1.0);
  }
  const int n_groups = n >= 3 ? static_cast<int>(r.below(max_groups + 1)) : 0;
  std::int64_t next_member = 0;
  for (int g = 0; g < n_groups && next_member < n; ++g) {
    Group group;
    group.group_id = g;
    group.layer_name = name;
    const std::int64_t size = std::min<std::int64_t>(1 + r.below(4), n - next_member);
    for (std::int64_t k = 0; k < size; ++k) {
      l.labels[static_cast<std::size_t>(next_member)] = g;
      group.neuron_indices.push_back(static_cast<std::int32_t>(next_member++));
    }
    next_member += r.below(3);
    group.cohesion_score = r.uniform();
    group.mean_activation = r.value();
    group.importance = r.uniform();
    const auto pattern_len = r.below(3) == 0 ? 0 : 1 + r.below(40);
    for (std::int64_t k = 0; k < pattern_len; ++k) group.activation_pattern.push_back(static_cast<float>(r.value()));
    if (g % 2 == 0) group.learning_phase = "early";
    if (g == 1) group.skill_category = std::string(32, 'x');  // exactly the stored width
    l.groups.push_back(std::move(group));
  }
  l.counters.captured_batches = 10 + r.below(100);
  l.counters.dropped_batches = r.below(3);
  l.counters.skipped_batches = r.below(2);
  l.counters.rows = l.samples;
  l.counters.nonfinite_rows = r.below(2);
  l.counters.errors = 0;
  add_version2_fields(index, which, l);
  add_version3_fields(index, which, l);
  add_version4_fields(index, which, l);
  add_version5_fields(index, which, l);
  return l;
}

/// Snapshot `index`: layers of different widths (one with no neurons on even indices, one not named in
/// RunInfo), correlation stored for some layers only, a NaN loss every fourth snapshot.
inline Snapshot sample_snapshot(std::int64_t index, std::int64_t scale = 1) {
  Snapshot s;
  s.epoch = 5 * (index + 1);
  s.loss = index % 4 == 3 ? std::numeric_limits<double>::quiet_NaN() : 1.0 / static_cast<double>(index + 1);
  s.timestamp = 1.7e9 + 0.25 * static_cast<double>(index);
  s.layers.push_back(sample_layer(index, 0, "conv1", 4 + index % 5, true, 1));
  s.layers.push_back(sample_layer(index, 1, "fc1", scale * (40 + (index * 13) % 90), true, 4));
  s.layers.push_back(sample_layer(index, 2, "fc2", 1 + index % 3, false, 0));
  s.layers.push_back(sample_layer(index, 3, "head", index % 2 == 0 ? 0 : 10, false, 2));
  if (index % 3 == 1) s.layers.push_back(sample_layer(index, 4, "extra.not_in_info", 5, true, 2));
  add_version2_fields(index, s);
  return s;
}

/// What a version 4 file holds of `s`: no heads and no batches left out for the budget (version 5).
inline Snapshot as_version4(Snapshot s) {
  for (auto& l : s.layers) {
    l.heads.clear();
    l.counters.budget_skipped_batches = 0;
  }
  return s;
}

/// What a version 3 file holds of `s`: the fields version 4 added as its readers give them.
inline Snapshot as_version3(Snapshot s) {
  s = as_version4(std::move(s));
  for (auto& l : s.layers)
    for (auto& g : l.groups) {
      g.min_member_correlation = std::numeric_limits<double>::quiet_NaN();
      g.loose = false;
    }
  return s;
}

/// What a version 2 file holds of `s`: the fields versions 3 and 4 added at their defaults.
inline Snapshot as_version2(Snapshot s) {
  s = as_version3(std::move(s));
  for (auto& l : s.layers) {
    l.reference.clear();
    l.reference_rows = 0;
  }
  return s;
}

/// What a version 1 file holds of `s`: the fields versions 2 to 4 added at their defaults.
inline Snapshot as_version1(Snapshot s) {
  s = as_version2(std::move(s));
  const Snapshot snapshot_defaults;
  s.phase = snapshot_defaults.phase;
  s.events.clear();
  s.layer_cka.clear();
  s.loss_epochs.clear();
  s.losses.clear();
  for (auto& l : s.layers) {
    const LayerSnapshot defaults;
    l.mean_abs.clear();
    l.dead_rate = defaults.dead_rate;
    l.dormant_rate = defaults.dormant_rate;
    l.cka_previous = defaults.cka_previous;
    l.reservoir.clear();
    l.reservoir_ids.clear();
    l.reservoir_tags.clear();
    l.reservoir_loss.clear();
    for (auto& g : l.groups) {
      const Group group_defaults;
      g.lineage_id = group_defaults.lineage_id;
      g.selectivity = group_defaults.selectivity;
      g.loss_correlation = group_defaults.loss_correlation;
    }
  }
  return s;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}
inline bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

inline std::string event_difference(const Event& a, const Event& b) {
  if (a.epoch != b.epoch) return "epoch";
  if (a.layer != b.layer) return "layer";
  if (a.kind != b.kind) return "kind";
  if (a.lineages != b.lineages) return "lineages";
  if (!same_bits(a.strength, b.strength)) return "strength";
  if (a.skill_category != b.skill_category) return "skill_category";
  if (!same_bits(a.loss_change, b.loss_change)) return "loss_change";
  return {};
}

/// Empty when equal bit for bit; otherwise what differs first.
inline std::string difference(const Snapshot& a, const Snapshot& b) {
  std::ostringstream why;
  if (a.epoch != b.epoch) return "epoch";
  if (!same_bits(a.loss, b.loss)) return "loss";
  if (!same_bits(a.timestamp, b.timestamp)) return "timestamp";
  if (a.phase != b.phase) return "phase";
  if (a.events.size() != b.events.size()) return "number of events";
  for (std::size_t e = 0; e < a.events.size(); ++e)
    if (auto why = event_difference(a.events[e], b.events[e]); !why.empty())
      return "event " + std::to_string(e) + ": " + why;
  if (!same_bits(a.layer_cka, b.layer_cka)) return "layer_cka";
  if (a.loss_epochs != b.loss_epochs || !same_bits(a.losses, b.losses)) return "loss curve";
  if (a.layers.size() != b.layers.size()) return "number of layers";
  for (std::size_t i = 0; i < a.layers.size(); ++i) {
    const auto& x = a.layers[i];
    const auto& y = b.layers[i];
    const std::string at = "layer " + std::to_string(i) + " ('" + x.name + "'): ";
    if (x.name != y.name) return at + "name";
    if (x.output_shape != y.output_shape) return at + "output_shape";
    if (x.n_neurons != y.n_neurons || x.samples != y.samples) return at + "n_neurons/samples";
    if (!same_bits(x.mean, y.mean) || !same_bits(x.stddev, y.stddev) || !same_bits(x.min, y.min) ||
        !same_bits(x.max, y.max))
      return at + "statistics";
    if (x.dead != y.dead || x.labels != y.labels) return at + "dead/labels";
    if (x.gradient_samples != y.gradient_samples || !same_bits(x.grad_mean_abs, y.grad_mean_abs) ||
        !same_bits(x.taylor, y.taylor))
      return at + "gradients";
    if (!same_bits(x.correlation, y.correlation)) return at + "correlation";
    if (!same_bits(x.mean_abs, y.mean_abs)) return at + "mean_abs";
    if (!same_bits(x.dead_rate, y.dead_rate) || !same_bits(x.dormant_rate, y.dormant_rate)) return at + "dormant rates";
    if (!same_bits(x.cka_previous, y.cka_previous)) return at + "cka_previous";
    if (!same_bits(x.reservoir, y.reservoir)) return at + "reservoir";
    if (x.reservoir_ids != y.reservoir_ids || x.reservoir_tags != y.reservoir_tags ||
        !same_bits(x.reservoir_loss, y.reservoir_loss))
      return at + "reservoir ids/tags/loss";
    if (x.reference_rows != y.reference_rows || !same_bits(x.reference, y.reference)) return at + "reference";
    if (x.heads.size() != y.heads.size()) return at + "number of heads";
    for (std::size_t h = 0; h < x.heads.size(); ++h) {
      const auto& p = x.heads[h];
      const auto& q = y.heads[h];
      if (p.queries != q.queries || !same_bits(p.entropy_mean, q.entropy_mean) ||
          !same_bits(p.entropy_std, q.entropy_std) || !same_bits(p.distance_mean, q.distance_mean) ||
          !same_bits(p.concentration, q.concentration) || !same_bits(p.collapsed_fraction, q.collapsed_fraction) ||
          p.uniform != q.uniform || p.collapsed != q.collapsed || !same_bits(p.offset_weight, q.offset_weight) ||
          p.role != q.role)
        return at + "head " + std::to_string(h);
    }
    const auto& c = x.counters;
    const auto& d = y.counters;
    if (c.captured_batches != d.captured_batches || c.dropped_batches != d.dropped_batches ||
        c.skipped_batches != d.skipped_batches || c.rows != d.rows || c.nonfinite_rows != d.nonfinite_rows ||
        c.errors != d.errors || c.budget_skipped_batches != d.budget_skipped_batches)
      return at + "counters";
    if (x.groups.size() != y.groups.size()) return at + "number of groups";
    for (std::size_t g = 0; g < x.groups.size(); ++g) {
      const auto& p = x.groups[g];
      const auto& q = y.groups[g];
      const std::string gat = at + "group " + std::to_string(g) + ": ";
      if (p.group_id != q.group_id || p.layer_name != q.layer_name) return gat + "id/layer";
      if (p.neuron_indices != q.neuron_indices) return gat + "members";
      if (!same_bits(p.cohesion_score, q.cohesion_score) || !same_bits(p.mean_activation, q.mean_activation) ||
          !same_bits(p.importance, q.importance))
        return gat + "scores";
      if (!same_bits(p.activation_pattern, q.activation_pattern)) return gat + "pattern";
      if (p.learning_phase != q.learning_phase || p.skill_category != q.skill_category) return gat + "labels";
      if (p.lineage_id != q.lineage_id) return gat + "lineage_id";
      if (!same_bits(p.selectivity, q.selectivity) || !same_bits(p.loss_correlation, q.loss_correlation))
        return gat + "selectivity/loss_correlation";
      if (!same_bits(p.min_member_correlation, q.min_member_correlation)) return gat + "min_member_correlation";
      if (p.loose != q.loose) return gat + "loose";
    }
  }
  return {};
}

}  // namespace neuronmap::test
