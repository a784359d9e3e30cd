// Group ordering and block averaging of correlation matrices.
#include "report/layout.hpp"

#include <algorithm>
#include <cmath>

namespace neuronmap::report {

GroupOrder order_by_group(const LayerSnapshot& layer) {
  GroupOrder out;
  const auto n = std::max<std::int64_t>(layer.n_neurons, 0);
  out.group_of.assign(static_cast<std::size_t>(n), -1);
  std::vector<bool> placed(static_cast<std::size_t>(n), false);
  for (const auto& g : layer.groups) {
    const auto begin = static_cast<std::int64_t>(out.order.size());
    for (auto idx : g.neuron_indices) {
      // A damaged file may hold members out of range or in two groups: place each neuron once.
      if (idx < 0 || idx >= n || placed[static_cast<std::size_t>(idx)]) continue;
      placed[static_cast<std::size_t>(idx)] = true;
      out.group_of[static_cast<std::size_t>(idx)] = g.group_id;
      out.order.push_back(idx);
      out.label.push_back(g.group_id);
    }
    const auto end = static_cast<std::int64_t>(out.order.size());
    if (end > begin) out.blocks.push_back({g.group_id, begin, end});
  }
  const auto ungrouped_begin = static_cast<std::int64_t>(out.order.size());
  // Dead neurons last: their undefined correlations then form one band instead of scattered stripes.
  const auto is_dead = [&layer](std::int64_t i) {
    return static_cast<std::size_t>(i) < layer.dead.size() && layer.dead[static_cast<std::size_t>(i)] != 0;
  };
  for (const bool dead : {false, true})
    for (std::int64_t i = 0; i < n; ++i)
      if (!placed[static_cast<std::size_t>(i)] && is_dead(i) == dead) {
        out.order.push_back(static_cast<std::int32_t>(i));
        out.label.push_back(-1);
      }
  if (n > ungrouped_begin) out.blocks.push_back({-1, ungrouped_begin, n});
  return out;
}

ReducedMatrix reduce_matrix(const LayerSnapshot& layer, const GroupOrder& order, std::int64_t max_cells) {
  ReducedMatrix out;
  const std::int64_t n = layer.n_neurons;
  if (n <= 0 || static_cast<std::int64_t>(layer.correlation.size()) != n * n) return out;
  out.n = n;
  out.cells = std::min(n, std::max<std::int64_t>(1, max_cells));
  const std::int64_t cells = out.cells;
  out.edges.resize(static_cast<std::size_t>(cells + 1));
  for (std::int64_t k = 0; k <= cells; ++k) out.edges[static_cast<std::size_t>(k)] = k * n / cells;
  out.values.assign(static_cast<std::size_t>(cells * cells), 0.0f);
  const float* corr = layer.correlation.data();

  if (cells == n) {
    for (std::int64_t i = 0; i < n; ++i) {
      const float* row = corr + static_cast<std::int64_t>(order.order[static_cast<std::size_t>(i)]) * n;
      float* dst = out.values.data() + i * n;
      for (std::int64_t j = 0; j < n; ++j) dst[j] = row[order.order[static_cast<std::size_t>(j)]];
    }
  } else {
    // Which cell each position falls in; then one pass over the matrix accumulates sums and counts.
    std::vector<std::int64_t> cell_of(static_cast<std::size_t>(n));
    for (std::int64_t k = 0; k < cells; ++k)
      for (auto p = out.edges[static_cast<std::size_t>(k)]; p < out.edges[static_cast<std::size_t>(k + 1)]; ++p)
        cell_of[static_cast<std::size_t>(p)] = k;
    std::vector<double> sums(static_cast<std::size_t>(cells * cells), 0.0);
    std::vector<std::int64_t> counts(static_cast<std::size_t>(cells * cells), 0);
    std::vector<double> row_sum(static_cast<std::size_t>(cells));
    std::vector<std::int64_t> row_count(static_cast<std::size_t>(cells));
    for (std::int64_t i = 0; i < n; ++i) {
      std::fill(row_sum.begin(), row_sum.end(), 0.0);
      std::fill(row_count.begin(), row_count.end(), 0);
      const float* row = corr + static_cast<std::int64_t>(order.order[static_cast<std::size_t>(i)]) * n;
      for (std::int64_t j = 0; j < n; ++j) {
        const float v = row[order.order[static_cast<std::size_t>(j)]];
        if (!std::isfinite(v)) continue;
        const auto c = static_cast<std::size_t>(cell_of[static_cast<std::size_t>(j)]);
        row_sum[c] += v;
        ++row_count[c];
      }
      const auto base = static_cast<std::size_t>(cell_of[static_cast<std::size_t>(i)] * cells);
      for (std::int64_t c = 0; c < cells; ++c) {
        sums[base + static_cast<std::size_t>(c)] += row_sum[static_cast<std::size_t>(c)];
        counts[base + static_cast<std::size_t>(c)] += row_count[static_cast<std::size_t>(c)];
      }
    }
    for (std::size_t k = 0; k < sums.size(); ++k)
      out.values[k] = counts[k] > 0 ? static_cast<float>(sums[k] / static_cast<double>(counts[k])) : NAN;
  }
  for (float v : out.values)
    if (std::isnan(v)) {
      out.any_nan = true;
      break;
    }
  // Infinite entries of a damaged file would otherwise paint as extremes; show them as undefined.
  for (auto& v : out.values)
    if (std::isinf(v)) {
      v = NAN;
      out.any_nan = true;
    }
  return out;
}

}  // namespace neuronmap::report
