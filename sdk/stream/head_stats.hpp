// Per-head attention statistics accumulated batch by batch from [B, H, T, S] weights laid out as rows
// (sample, query, key) x heads, without keeping the batch: sums in double over every query, merged
// across workers like the moments, and the HeadStatistics they give at a snapshot.
#pragma once

#include <cstdint>
#include <vector>

#include "neuronmap/snapshot.hpp"

namespace neuronmap::detail {

struct HeadAccumulator {
  static constexpr int kOffsets = HeadStatistics::kOffsets;
  static constexpr int kWidth = 2 * kOffsets + 1;
  std::int64_t heads = 0;
  bool self_attention = true;  // every batch had T == S
  std::vector<std::int64_t> queries;                       // per head: every (sample, query)
  std::vector<std::int64_t> open_queries;                  // per head: those with at least two keys
  std::vector<double> entropy, entropy_sq, max_weight, distance;
  std::vector<std::int64_t> collapsed_queries;
  std::vector<double> offset_sum;                          // heads x kWidth
  std::vector<std::int64_t> offset_count;                  // kWidth (the same for every head)

  /// Adds one batch: `rows` = B*T*S rows of `shape[1]` = H values, row (b, t, s) at ((b*T + t)*S + s).
  /// Queries with a non-finite weight are skipped. Throws std::invalid_argument when the shape does not fit.
  void add(const float* rows, std::int64_t n_rows, std::int64_t cols, const std::vector<std::int64_t>& shape);
  void merge(const HeadAccumulator& other);
  bool empty() const noexcept { return heads == 0; }
  /// Per head, with the degenerate flags and the role.
  std::vector<HeadStatistics> finish() const;
};

}  // namespace neuronmap::detail
