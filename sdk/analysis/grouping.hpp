// Groups of co-activating neurons from a correlation matrix. Semantics follow the reference
// (shared oracle README, spec_version 1); group ids are positions in a list ordered by smallest member.
#pragma once

#include <cstdint>
#include <vector>

#include "analysis/correlation.hpp"
#include "neuronmap/options.hpp"

namespace neuronmap::detail {

struct GroupingResult {
  std::vector<std::int32_t> labels;               ///< per neuron: group id or -1
  std::vector<std::vector<std::int32_t>> groups;  ///< members, ascending; ordered by smallest member
  std::vector<double> cohesion;                   ///< per group: clip(mean r over pairs, 0, 1)
};

/// Correlation-threshold clustering: an edge joins i and j when r_ij >= threshold; groups are the
/// connected components with at least min_group_size members.
GroupingResult correlation_groups(const Correlation& corr, double threshold, int min_group_size);

/// Dispatches on options.method. Throws UsageError for a method this build does not implement yet.
GroupingResult group_neurons(const Correlation& corr, const Grouping& options);

/// Orders clusters canonically, drops the small ones, and fills labels and cohesion.
GroupingResult finish_groups(const Correlation& corr, std::vector<std::vector<std::int32_t>> clusters,
                             int min_group_size);

}  // namespace neuronmap::detail
