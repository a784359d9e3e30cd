#include "analysis/grouping.hpp"

#include <algorithm>
#include <numeric>

#include "neuronmap/errors.hpp"

namespace neuronmap::detail {
namespace {

struct DisjointSets {
  explicit DisjointSets(std::size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  std::size_t find(std::size_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  }
  void join(std::size_t a, std::size_t b) {
    a = find(a);
    b = find(b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);
  }
  std::vector<std::size_t> parent;
};

}  // namespace

GroupingResult finish_groups(const Correlation& corr, std::vector<std::vector<std::int32_t>> clusters,
                             int min_group_size) {
  const auto n = static_cast<std::size_t>(corr.r.rows());
  GroupingResult out;
  out.labels.assign(n, -1);
  for (auto& members : clusters) {
    if (static_cast<int>(members.size()) < min_group_size || members.empty()) continue;
    std::sort(members.begin(), members.end());
    out.groups.push_back(std::move(members));
  }
  std::sort(out.groups.begin(), out.groups.end(),
            [](const auto& a, const auto& b) { return a.front() < b.front(); });
  for (std::size_t g = 0; g < out.groups.size(); ++g) {
    const auto& members = out.groups[g];
    double sum = 0.0;
    std::size_t pairs = 0;
    for (std::size_t a = 0; a < members.size(); ++a) {
      out.labels[static_cast<std::size_t>(members[a])] = static_cast<std::int32_t>(g);
      for (std::size_t b = a + 1; b < members.size(); ++b) {
        sum += corr.r(members[a], members[b]);
        ++pairs;
      }
    }
    out.cohesion.push_back(pairs == 0 ? 1.0 : std::clamp(sum / static_cast<double>(pairs), 0.0, 1.0));
  }
  return out;
}

GroupingResult correlation_groups(const Correlation& corr, double threshold, int min_group_size) {
  const auto n = static_cast<std::size_t>(corr.r.rows());
  DisjointSets sets(n);
  for (std::size_t j = 0; j < n; ++j) {
    const double* column = corr.r.col(static_cast<Eigen::Index>(j)).data();
    for (std::size_t i = 0; i < j; ++i) {
      if (column[i] >= threshold) sets.join(i, j);
    }
  }
  std::vector<std::vector<std::int32_t>> clusters(n);
  for (std::size_t i = 0; i < n; ++i) clusters[sets.find(i)].push_back(static_cast<std::int32_t>(i));
  return finish_groups(corr, std::move(clusters), min_group_size);
}

GroupingResult group_neurons(const Correlation& corr, const Grouping& options) {
  switch (options.method) {
    case GroupingMethod::correlation:
      return correlation_groups(corr, options.threshold, options.min_group_size);
    case GroupingMethod::kmeans:
    case GroupingMethod::hierarchical:
      break;
  }
  throw UsageError(std::string("grouping method '") + to_string(options.method) +
                   "' is not available in this build yet; use GroupingMethod::correlation");
}

}  // namespace neuronmap::detail
