// Group lineages: optimal matching of a layer's groups between snapshots and MONIC transitions.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "learning/learning.hpp"

namespace neuronmap::detail::learning {

namespace {

std::vector<std::int32_t> sorted_unique(std::vector<std::int32_t> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

// Minimum-cost assignment of every row to a distinct column of an n x m cost matrix with n <= m
// (shortest augmenting paths with potentials, Kuhn-Munkres in the O(n^2 m) form). cost(i, j) is row-major.
std::vector<int> min_cost_rows_to_columns(const std::vector<double>& cost, int n, int m) {
  const double inf = std::numeric_limits<double>::infinity();
  // 1-based with a virtual column 0, as in the textbook formulation.
  std::vector<double> u(n + 1, 0.0), v(m + 1, 0.0);
  std::vector<int> row_of_column(m + 1, 0), way(m + 1, 0);
  for (int i = 1; i <= n; ++i) {
    row_of_column[0] = i;
    int j0 = 0;
    std::vector<double> min_slack(m + 1, inf);
    std::vector<char> used(m + 1, 0);
    do {
      used[j0] = 1;
      const int i0 = row_of_column[j0];
      double delta = inf;
      int j1 = 0;
      for (int j = 1; j <= m; ++j) {
        if (used[j]) continue;
        const double reduced = cost[static_cast<std::size_t>(i0 - 1) * m + (j - 1)] - u[i0] - v[j];
        if (reduced < min_slack[j]) {
          min_slack[j] = reduced;
          way[j] = j0;
        }
        if (min_slack[j] < delta) {
          delta = min_slack[j];
          j1 = j;
        }
      }
      for (int j = 0; j <= m; ++j) {
        if (used[j]) {
          u[row_of_column[j]] += delta;
          v[j] -= delta;
        } else {
          min_slack[j] -= delta;
        }
      }
      j0 = j1;
    } while (row_of_column[j0] != 0);
    do {
      const int j1 = way[j0];
      row_of_column[j0] = row_of_column[j1];
      j0 = j1;
    } while (j0 != 0);
  }
  std::vector<int> column_of_row(n, -1);
  for (int j = 1; j <= m; ++j) {
    if (row_of_column[j] != 0) column_of_row[row_of_column[j] - 1] = j - 1;
  }
  return column_of_row;
}

TransitionKind survival_kind(std::size_t old_size, std::size_t new_size, double size_change_threshold) {
  // Relative size change (|Y| - |X|) / |X|; the tolerance keeps e.g. 10 -> 12 at exactly 0.2 a change.
  const double change = (static_cast<double>(new_size) - static_cast<double>(old_size)) / static_cast<double>(old_size);
  const double eps = 1e-12;
  if (change >= size_change_threshold - eps) return TransitionKind::grew;
  if (change <= -size_change_threshold + eps) return TransitionKind::shrank;
  return TransitionKind::survived;
}

}  // namespace

std::vector<int> max_weight_assignment(const std::vector<double>& weights, int rows, int cols) {
  if (rows < 0 || cols < 0 || weights.size() != static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols)) {
    throw std::invalid_argument("max_weight_assignment: weights must hold rows x cols values");
  }
  std::vector<int> result(static_cast<std::size_t>(rows), -1);
  if (rows == 0 || cols == 0) return result;
  for (double w : weights) {
    if (!std::isfinite(w)) throw std::invalid_argument("max_weight_assignment: weights must be finite");
  }
  // Maximising sum w equals minimising sum (-w). Every row of the smaller side gets a column; pairs of
  // weight <= 0 add nothing to the total, so dropping them afterwards leaves a maximum-weight matching.
  const bool transpose = rows > cols;
  const int n = transpose ? cols : rows, m = transpose ? rows : cols;
  std::vector<double> cost(static_cast<std::size_t>(n) * m);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < m; ++j) {
      const std::size_t at = transpose ? static_cast<std::size_t>(j) * cols + i : static_cast<std::size_t>(i) * cols + j;
      cost[static_cast<std::size_t>(i) * m + j] = -std::max(weights[at], 0.0);
    }
  }
  const std::vector<int> assigned = min_cost_rows_to_columns(cost, n, m);
  for (int i = 0; i < n; ++i) {
    const int j = assigned[i];
    if (j < 0) continue;
    const int row = transpose ? j : i, col = transpose ? i : j;
    if (weights[static_cast<std::size_t>(row) * cols + col] > 0.0) result[row] = col;
  }
  return result;
}

double jaccard(const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b) {
  const auto x = sorted_unique(a), y = sorted_unique(b);
  if (x.empty() && y.empty()) return 0.0;
  std::size_t common = 0;
  for (std::size_t i = 0, j = 0; i < x.size() && j < y.size();) {
    if (x[i] < y[j]) {
      ++i;
    } else if (y[j] < x[i]) {
      ++j;
    } else {
      ++common, ++i, ++j;
    }
  }
  return static_cast<double>(common) / static_cast<double>(x.size() + y.size() - common);
}

const char* to_string(TransitionKind kind) noexcept {
  switch (kind) {
    case TransitionKind::emerged: return "emerged";
    case TransitionKind::survived: return "survived";
    case TransitionKind::grew: return "grew";
    case TransitionKind::shrank: return "shrank";
    case TransitionKind::split: return "split";
    case TransitionKind::merged: return "merged";
    case TransitionKind::dissolved: return "dissolved";
  }
  return "unknown";
}

LineageUpdate match_groups(const std::vector<GroupSet>& previous, const std::vector<std::int64_t>& previous_lineage_ids,
                           const std::vector<GroupSet>& current, std::int64_t& next_lineage_id,
                           const LearningOptions& options) {
  if (previous_lineage_ids.size() != previous.size()) {
    throw std::invalid_argument("match_groups: one lineage id per previous group is needed");
  }
  const std::size_t n_old = previous.size(), n_new = current.size();
  std::vector<std::vector<std::int32_t>> old_sets(n_old), new_sets(n_new);
  std::int32_t max_neuron = -1;
  for (std::size_t i = 0; i < n_old; ++i) {
    old_sets[i] = sorted_unique(previous[i].neurons);
    if (!old_sets[i].empty()) max_neuron = std::max(max_neuron, old_sets[i].back());
  }
  for (std::size_t j = 0; j < n_new; ++j) {
    new_sets[j] = sorted_unique(current[j].neurons);
    if (!new_sets[j].empty()) max_neuron = std::max(max_neuron, new_sets[j].back());
    if (!new_sets[j].empty() && new_sets[j].front() < 0) throw std::invalid_argument("match_groups: negative neuron index");
  }
  for (const auto& s : old_sets) {
    if (!s.empty() && s.front() < 0) throw std::invalid_argument("match_groups: negative neuron index");
  }

  // Which new groups hold each neuron (groups of one snapshot are disjoint, but nothing here needs it).
  std::vector<std::vector<int>> owners(static_cast<std::size_t>(max_neuron + 1));
  for (std::size_t j = 0; j < n_new; ++j) {
    for (auto neuron : new_sets[j]) owners[neuron].push_back(static_cast<int>(j));
  }
  // overlap(i, j) = |X_i intersect Y_j|
  std::vector<std::int64_t> overlap(n_old * n_new, 0);
  for (std::size_t i = 0; i < n_old; ++i) {
    for (auto neuron : old_sets[i]) {
      for (int j : owners[neuron]) ++overlap[i * n_new + j];
    }
  }
  auto ov = [&](std::size_t i, std::size_t j) { return overlap[i * n_new + j]; };
  auto jac = [&](std::size_t i, std::size_t j) {
    const auto o = ov(i, j);
    const auto uni = static_cast<std::int64_t>(old_sets[i].size() + new_sets[j].size()) - o;
    return uni > 0 ? static_cast<double>(o) / static_cast<double>(uni) : 0.0;
  };
  // Y is a part of X (X a contributor to Y) when |X intersect Y| >= split_fraction * |X| (and >= 1).
  auto is_part = [&](std::size_t i, std::size_t j) {
    const auto o = ov(i, j);
    return o > 0 && static_cast<double>(o) >= options.split_fraction * static_cast<double>(old_sets[i].size()) - 1e-12;
  };

  // Optimal one-to-one matching on J(X, Y) = |X intersect Y| / |X union Y|: weight J where
  // J >= match_threshold (eligible), else 0; the Hungarian algorithm maximises the total weight.
  std::vector<double> weights(n_old * n_new, 0.0);
  for (std::size_t i = 0; i < n_old; ++i) {
    for (std::size_t j = 0; j < n_new; ++j) {
      const double J = jac(i, j);
      if (J > 0.0 && J >= options.match_threshold - 1e-12) weights[i * n_new + j] = J;
    }
  }
  const std::vector<int> match_of_old = max_weight_assignment(weights, static_cast<int>(n_old), static_cast<int>(n_new));
  std::vector<int> match_of_new(n_new, -1);
  for (std::size_t i = 0; i < n_old; ++i) {
    if (match_of_old[i] >= 0) match_of_new[match_of_old[i]] = static_cast<int>(i);
  }

  LineageUpdate out;
  out.matched_previous = match_of_new;
  out.lineage_ids.resize(n_new);
  for (std::size_t j = 0; j < n_new; ++j) {
    out.lineage_ids[j] = match_of_new[j] >= 0 ? previous_lineage_ids[match_of_new[j]] : next_lineage_id++;
  }

  std::vector<std::vector<int>> parts(n_old), contributors(n_new);
  for (std::size_t i = 0; i < n_old; ++i) {
    for (std::size_t j = 0; j < n_new; ++j) {
      if (is_part(i, j)) {
        parts[i].push_back(static_cast<int>(j));
        contributors[j].push_back(static_cast<int>(i));
      }
    }
  }
  // Largest share first: parts by overlap, contributors by the share of themselves they gave.
  for (std::size_t i = 0; i < n_old; ++i) {
    std::stable_sort(parts[i].begin(), parts[i].end(), [&](int a, int b) { return ov(i, a) > ov(i, b); });
  }
  for (std::size_t j = 0; j < n_new; ++j) {
    std::stable_sort(contributors[j].begin(), contributors[j].end(), [&](int a, int b) {
      return static_cast<double>(ov(a, j)) / old_sets[a].size() > static_cast<double>(ov(b, j)) / old_sets[b].size();
    });
  }
  std::vector<char> is_split(n_old, 0), is_merge(n_new, 0), old_covered(n_old, 0), new_covered(n_new, 0);
  for (std::size_t i = 0; i < n_old; ++i) is_split[i] = parts[i].size() >= 2;
  for (std::size_t j = 0; j < n_new; ++j) is_merge[j] = contributors[j].size() >= 2;

  auto add_old = [&](Transition& t, std::size_t i) {
    t.old_group_ids.push_back(previous[i].group_id);
    t.old_lineage_ids.push_back(previous_lineage_ids[i]);
    old_covered[i] = 1;
  };
  auto add_new = [&](Transition& t, std::size_t j) {
    t.new_group_ids.push_back(current[j].group_id);
    t.new_lineage_ids.push_back(out.lineage_ids[j]);
    new_covered[j] = 1;
  };
  auto clamp01 = [](double v) { return std::min(1.0, std::max(0.0, v)); };

  // Split (X has >= 2 parts): strength = |X intersect union(parts)| / |X|.
  for (std::size_t i = 0; i < n_old; ++i) {
    if (!is_split[i]) continue;
    Transition t;
    t.kind = TransitionKind::split;
    add_old(t, i);
    std::int64_t in_parts = 0;
    for (auto neuron : old_sets[i]) {
      const auto& own = owners[neuron];
      in_parts += std::any_of(own.begin(), own.end(), [&](int j) {
        return std::find(parts[i].begin(), parts[i].end(), j) != parts[i].end();
      });
    }
    for (int j : parts[i]) add_new(t, j);
    t.strength = clamp01(static_cast<double>(in_parts) / static_cast<double>(old_sets[i].size()));
    out.transitions.push_back(std::move(t));
  }
  // Merged (Y has >= 2 contributors): strength = |Y intersect union(contributors)| / |Y|.
  for (std::size_t j = 0; j < n_new; ++j) {
    if (!is_merge[j]) continue;
    Transition t;
    t.kind = TransitionKind::merged;
    for (int i : contributors[j]) add_old(t, i);
    add_new(t, j);
    std::int64_t from_merged = 0;
    for (auto neuron : new_sets[j]) {
      from_merged += std::any_of(contributors[j].begin(), contributors[j].end(), [&](int i) {
        return std::binary_search(old_sets[i].begin(), old_sets[i].end(), neuron);
      });
    }
    t.strength = new_sets[j].empty() ? 0.0 : clamp01(static_cast<double>(from_merged) / new_sets[j].size());
    out.transitions.push_back(std::move(t));
  }
  // A match that the split or merge above does not already explain: survived, grew or shrank by
  // delta = (|Y| - |X|) / |X| against size_change_threshold; strength = 1 - J(X, Y).
  for (std::size_t i = 0; i < n_old; ++i) {
    const int j = match_of_old[i];
    if (j < 0) continue;
    const bool explained_by_split = is_split[i] && std::find(parts[i].begin(), parts[i].end(), j) != parts[i].end();
    const bool explained_by_merge =
        is_merge[j] && std::find(contributors[j].begin(), contributors[j].end(), static_cast<int>(i)) != contributors[j].end();
    if (explained_by_split || explained_by_merge) continue;
    Transition t;
    t.kind = survival_kind(old_sets[i].size(), new_sets[j].size(), options.size_change_threshold);
    add_old(t, i);
    add_new(t, static_cast<std::size_t>(j));
    t.strength = clamp01(1.0 - jac(i, static_cast<std::size_t>(j)));
    out.transitions.push_back(std::move(t));
  }
  // What no transition holds yet has no continuation (dissolved) or no origin (emerged); strength = the
  // group's cohesion.
  for (std::size_t i = 0; i < n_old; ++i) {
    if (old_covered[i]) continue;
    Transition t;
    t.kind = TransitionKind::dissolved;
    add_old(t, i);
    t.strength = clamp01(previous[i].cohesion);
    out.transitions.push_back(std::move(t));
  }
  for (std::size_t j = 0; j < n_new; ++j) {
    if (new_covered[j]) continue;
    Transition t;
    t.kind = TransitionKind::emerged;
    add_new(t, j);
    t.strength = clamp01(current[j].cohesion);
    out.transitions.push_back(std::move(t));
  }
  return out;
}

LineageUpdate LineageTracker::update(const std::vector<GroupSet>& groups) {
  LineageUpdate out = match_groups(previous_, previous_lineage_ids_, groups, next_lineage_id_, options_);
  previous_ = groups;
  previous_lineage_ids_ = out.lineage_ids;
  return out;
}

LineageUpdate LineageTracker::update(const std::vector<Group>& groups) {
  std::vector<GroupSet> sets;
  sets.reserve(groups.size());
  for (const auto& g : groups) sets.push_back(GroupSet{g.group_id, g.neuron_indices, g.cohesion_score});
  return update(sets);
}

}  // namespace neuronmap::detail::learning
