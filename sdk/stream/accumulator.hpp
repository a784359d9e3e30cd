// What a worker accumulates for one layer in one capture window, and the merge that combines two such
// accumulators: the engine merges its workers' with it, a distributed session the ranks' (exchange.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "analysis/moments.hpp"
#include "stream/head_stats.hpp"
#include "stream/reservoir.hpp"

namespace neuronmap::detail {

// Sums of gradient rows: per neuron |dL/da| and a * dL/da (reduced like the activations).
struct GradientAccumulator {
  std::int64_t rows = 0;
  std::vector<double> sum_abs, sum_product;
  void add(const float* values, std::int64_t n_rows, std::int64_t neurons) {
    if (sum_abs.empty()) {
      sum_abs.assign(static_cast<std::size_t>(neurons), 0.0);
      sum_product.assign(static_cast<std::size_t>(neurons), 0.0);
    }
    for (std::int64_t r = 0; r < n_rows; ++r) {
      const float* row = values + r * 2 * neurons;
      for (std::int64_t c = 0; c < neurons; ++c) {
        sum_abs[static_cast<std::size_t>(c)] += row[c];
        sum_product[static_cast<std::size_t>(c)] += row[neurons + c];
      }
    }
    rows += n_rows;
  }
  void merge(const GradientAccumulator& other) {
    if (other.rows == 0) return;
    if (rows == 0) {
      *this = other;
      return;
    }
    for (std::size_t c = 0; c < sum_abs.size() && c < other.sum_abs.size(); ++c) {
      sum_abs[c] += other.sum_abs[c];
      sum_product[c] += other.sum_product[c];
    }
    rows += other.rows;
  }
};

// What one worker accumulated for one layer in one window.
struct LayerAccumulator {
  GradientAccumulator gradients;
  HeadAccumulator heads;                                  // attention layers only
  std::vector<double> sum_abs;                            // per neuron, over finite rows
  std::unordered_map<std::int64_t, std::int64_t> batch_rows;  // ordinal -> rows, to map rows to samples
  std::optional<Moments> moments;
  Reservoir reservoir;
  std::vector<std::int64_t> output_shape;
  std::int64_t rows = 0;
  std::int64_t nonfinite_rows = 0;

  /// Adds the layer's `ordinal`-th batch of the window: n_rows x cols, row-major. Its rows enter the
  /// reservoir (of `reservoir_size` rows, keyed by `seed`) as sample_id(sample_ordinal, row). Rows with
  /// NaN or Inf are skipped; returns how many. `products`: see Moments.
  std::int64_t add_batch(const float* values, std::int64_t n_rows, std::int64_t cols, std::int64_t ordinal,
                         std::int64_t sample_ordinal, std::int64_t reservoir_size, std::uint64_t seed,
                         ProductPrecision products = ProductPrecision::f64);
};

inline bool row_is_finite(const float* row, std::int64_t cols) {
  for (std::int64_t c = 0; c < cols; ++c) {
    if (!std::isfinite(row[c])) return false;
  }
  return true;
}

inline std::int64_t LayerAccumulator::add_batch(const float* values, std::int64_t n_rows, std::int64_t cols,
                                                std::int64_t ordinal, std::int64_t sample_ordinal,
                                                std::int64_t reservoir_size, std::uint64_t seed,
                                                ProductPrecision products) {
  if (!moments) {
    moments.emplace(cols, products);
    reservoir = Reservoir(reservoir_size, cols, seed);
  }
  const std::int64_t skipped = moments->add(values, n_rows);
  if (sum_abs.empty()) sum_abs.assign(static_cast<std::size_t>(cols), 0.0);
  for (std::int64_t r = 0; r < n_rows; ++r) {
    const float* row = values + r * cols;
    if (skipped != 0 && !row_is_finite(row, cols)) continue;
    reservoir.offer(sample_id(sample_ordinal, r), row);
    for (std::int64_t c = 0; c < cols; ++c) sum_abs[static_cast<std::size_t>(c)] += std::abs(row[c]);
  }
  batch_rows[ordinal] = n_rows;
  rows += n_rows - skipped;
  nonfinite_rows += skipped;
  return skipped;
}

/// Adds `from` to `to`: Chan's update for the moments, sums for the rest, the bottom-k merge for the
/// reservoir (exact in any order). Accumulators of another width are ignored (widths are checked at submit).
/// `parallel`: the co-moment merge may use TBB's threads (not on a worker: see Moments::merge).
inline void merge_accumulator(LayerAccumulator& to, LayerAccumulator&& from, bool parallel = true) {
  if (!from.moments) {
    to.gradients.merge(from.gradients);
    return;
  }
  if (!to.moments) {
    GradientAccumulator gradients = std::move(to.gradients);
    HeadAccumulator heads = std::move(to.heads);
    to = std::move(from);
    to.gradients.merge(gradients);
    to.heads.merge(heads);
    return;
  }
  if (from.moments->n_neurons() != to.moments->n_neurons()) return;
  to.moments->merge(*from.moments, parallel);
  to.heads.merge(from.heads);
  to.gradients.merge(from.gradients);
  for (std::size_t c = 0; c < to.sum_abs.size() && c < from.sum_abs.size(); ++c) to.sum_abs[c] += from.sum_abs[c];
  to.batch_rows.insert(from.batch_rows.begin(), from.batch_rows.end());
  to.reservoir.merge(from.reservoir);
  to.rows += from.rows;
  to.nonfinite_rows += from.nonfinite_rows;
  if (!from.output_shape.empty()) to.output_shape = from.output_shape;
}

}  // namespace neuronmap::detail
