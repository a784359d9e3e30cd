// Per-sample learning events: one pass over the rows, the groups' means against the row's threshold.
#include "learning/sample_events.hpp"

#include <cmath>
#include <limits>
#include <string>

#include "neuronmap/errors.hpp"

namespace neuronmap::detail::learning {
namespace {

template <typename T>
SampleEvents events_of(const T* rows, std::int64_t n_rows, std::int64_t n_neurons,
                       const std::vector<std::vector<std::int32_t>>& groups, double sigma) {
  if (n_rows < 0 || n_neurons < 0) throw UsageError("sample events: negative matrix shape");
  for (std::size_t g = 0; g < groups.size(); ++g) {
    if (groups[g].empty()) throw UsageError("sample events: group " + std::to_string(g) + " has no members");
    for (auto i : groups[g])
      if (i < 0 || i >= n_neurons)
        throw UsageError("sample events: group " + std::to_string(g) + " has neuron " + std::to_string(i) +
                         ", outside 0.." + std::to_string(n_neurons - 1));
  }
  SampleEvents out;
  if (groups.empty() || n_neurons == 0) return out;
  const double n = static_cast<double>(n_neurons);
  std::vector<double> means(groups.size());
  for (std::int64_t r = 0; r < n_rows; ++r) {
    const T* row = rows + r * n_neurons;
    // Two passes over the row: the mean, then the squared deviations (no cancellation).
    double sum = 0;
    for (std::int64_t j = 0; j < n_neurons; ++j) sum += static_cast<double>(row[j]);
    const double mean = sum / n;
    double squares = 0;
    for (std::int64_t j = 0; j < n_neurons; ++j) {
      const double d = static_cast<double>(row[j]) - mean;
      squares += d * d;
    }
    const double stddev = n_neurons > 1 ? std::sqrt(squares / (n - 1)) : 0.0;
    const double threshold = mean + sigma * stddev;
    std::vector<std::int32_t> active;
    double strongest = -std::numeric_limits<double>::infinity();
    for (std::size_t g = 0; g < groups.size(); ++g) {
      double s = 0;
      for (auto i : groups[g]) s += static_cast<double>(row[i]);
      means[g] = s / static_cast<double>(groups[g].size());
      if (means[g] > threshold) active.push_back(static_cast<std::int32_t>(g));
      if (means[g] > strongest) strongest = means[g];
    }
    if (active.empty()) continue;
    out.samples.push_back(r);
    out.activated.push_back(std::move(active));
    out.strength.push_back(strongest);
  }
  return out;
}

}  // namespace

SampleEvents sample_events(const float* rows, std::int64_t n_rows, std::int64_t n_neurons,
                           const std::vector<std::vector<std::int32_t>>& groups, double sigma) {
  return events_of(rows, n_rows, n_neurons, groups, sigma);
}

SampleEvents sample_events(const double* rows, std::int64_t n_rows, std::int64_t n_neurons,
                           const std::vector<std::vector<std::int32_t>>& groups, double sigma) {
  return events_of(rows, n_rows, n_neurons, groups, sigma);
}

SampleEvents sample_events(const LayerSnapshot& layer, double sigma) {
  const std::int64_t n = layer.n_neurons;
  if (n <= 0 || layer.groups.empty() || layer.reservoir.empty() || layer.reservoir.size() % static_cast<std::size_t>(n) != 0)
    return {};
  std::vector<std::vector<std::int32_t>> groups;
  for (const auto& g : layer.groups) groups.push_back(g.neuron_indices);
  return events_of(layer.reservoir.data(), static_cast<std::int64_t>(layer.reservoir.size()) / n, n, groups, sigma);
}

}  // namespace neuronmap::detail::learning
