// Canonical group lists with their cohesion, the connected components of spec v1 and the method dispatch.
#include "analysis/grouping.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <string>
#include <unordered_map>

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

// (cohesion, min_member_correlation) of one group: the mean r over its pairs, clipped to [0, 1], and
// the smallest of the members' mean r with the other members. A single neuron has 1 for both.
std::pair<double, double> group_cohesion(const Correlation& corr, const std::vector<std::int32_t>& members) {
  const std::size_t size = members.size();
  if (size < 2) return {1.0, 1.0};
  double pair_sum = 0.0;
  double min_member = std::numeric_limits<double>::infinity();
  for (std::size_t a = 0; a < size; ++a) {
    double row = 0.0, member_sum = 0.0;
    for (std::size_t b = 0; b < size; ++b) {
      if (b == a) continue;
      const double r = corr.r(members[a], members[b]);
      member_sum += r;
      if (b > a) row += r;
    }
    pair_sum += row;
    min_member = std::min(min_member, member_sum / static_cast<double>(size - 1));
  }
  const double pairs = 0.5 * static_cast<double>(size) * static_cast<double>(size - 1);
  return {std::clamp(pair_sum / pairs, 0.0, 1.0), min_member};
}

}  // namespace

GroupingResult finish_groups(const Correlation& corr, std::vector<std::vector<std::int32_t>> clusters,
                             int min_group_size) {
  const auto n = static_cast<std::size_t>(corr.r.rows());
  GroupingResult out;
  out.labels.assign(n, -1);
  for (auto& members : clusters) {
    if (members.empty()) continue;
    ++out.n_raw_clusters;
    if (static_cast<int>(members.size()) < min_group_size) continue;
    std::sort(members.begin(), members.end());
    out.groups.push_back(std::move(members));
  }
  std::sort(out.groups.begin(), out.groups.end(),
            [](const auto& a, const auto& b) { return a.front() < b.front(); });
  for (std::size_t g = 0; g < out.groups.size(); ++g) {
    const auto& members = out.groups[g];
    for (const auto m : members) out.labels[static_cast<std::size_t>(m)] = static_cast<std::int32_t>(g);
    const auto [cohesion, min_member] = group_cohesion(corr, members);
    out.cohesion.push_back(cohesion);
    out.min_member_correlation.push_back(min_member);
  }
  return out;
}

GroupingResult finish_groups(const Correlation& corr, const std::vector<std::int32_t>& raw_labels,
                             int min_group_size) {
  std::unordered_map<std::int32_t, std::size_t> slot;
  std::vector<std::vector<std::int32_t>> clusters;
  for (std::size_t i = 0; i < raw_labels.size(); ++i) {
    if (raw_labels[i] < 0) continue;
    auto [it, inserted] = slot.emplace(raw_labels[i], clusters.size());
    if (inserted) clusters.emplace_back();
    clusters[it->second].push_back(static_cast<std::int32_t>(i));
  }
  return finish_groups(corr, std::move(clusters), min_group_size);
}

std::int64_t count_edges(const Correlation& corr, double threshold, const std::vector<std::int32_t>& live) {
  std::int64_t edges = 0;
  corr.r.visit([&](const auto& r) {
    const auto n = static_cast<std::int32_t>(r.rows());
    auto count_pair = [&](std::int32_t i, std::int32_t j) {
      // Compare in float64, as the reference does (a float32 r is widened exactly).
      if (static_cast<double>(r(i, j)) >= threshold) ++edges;
    };
    if (live.empty()) {
      for (std::int32_t j = 0; j < n; ++j)
        for (std::int32_t i = 0; i < j; ++i) count_pair(i, j);
    } else {
      for (std::size_t y = 0; y < live.size(); ++y)
        for (std::size_t x = 0; x < y; ++x) count_pair(live[x], live[y]);
    }
    return 0;
  });
  return edges;
}

GroupingResult threshold_components(const Correlation& corr, double threshold, int min_group_size) {
  const auto n = static_cast<std::size_t>(corr.r.rows());
  DisjointSets sets(n);
  corr.r.visit([&](const auto& r) {
    using Scalar = typename std::decay_t<decltype(r)>::Scalar;
    for (std::size_t j = 0; j < n; ++j) {
      const Scalar* column = r.col(static_cast<Eigen::Index>(j)).data();
      for (std::size_t i = 0; i < j; ++i)
        if (static_cast<double>(column[i]) >= threshold) sets.join(i, j);
    }
    return 0;
  });
  std::vector<std::vector<std::int32_t>> clusters(n);
  for (std::size_t i = 0; i < n; ++i) clusters[sets.find(i)].push_back(static_cast<std::int32_t>(i));
  GroupingResult out = finish_groups(corr, std::move(clusters), min_group_size);
  out.n_edges = count_edges(corr, threshold, {});
  return out;
}

GroupingResult group_neurons(const Correlation& corr, const Grouping& options) {
  switch (options.method) {
    case GroupingMethod::correlation:
      return correlation_groups(corr, options.threshold, options.min_group_size, options.n_init, options.seed);
    case GroupingMethod::components:
      return threshold_components(corr, options.threshold, options.min_group_size);
    case GroupingMethod::kmeans:
      return kmeans_groups(corr, options.n_groups, options.n_init, options.seed, options.min_group_size);
    case GroupingMethod::hierarchical:
      return hierarchical_groups(corr, options.threshold, options.n_groups, options.min_group_size);
  }
  throw UsageError(std::string("unknown grouping method ") + std::to_string(static_cast<int>(options.method)));
}

double adjusted_rand_index(const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b) {
  if (a.size() != b.size()) throw UsageError("adjusted_rand_index: labelings of different lengths");
  const auto n = static_cast<double>(a.size());
  if (a.size() < 2) return 1.0;
  std::unordered_map<std::int64_t, double> joint;
  std::unordered_map<std::int32_t, double> rows, cols;
  for (std::size_t i = 0; i < a.size(); ++i) {
    // The pair packed into 64 bits through unsigned arithmetic: labels may be -1 ("no group"), and
    // shifting a negative signed value is undefined before C++20 (UBSan found it).
    const std::uint64_t high = static_cast<std::uint32_t>(a[i]), low = static_cast<std::uint32_t>(b[i]);
    const auto key = (high << 32) | low;
    joint[static_cast<std::int64_t>(key)] += 1;
    rows[a[i]] += 1;
    cols[b[i]] += 1;
  }
  auto pairs = [](double m) { return m * (m - 1) / 2; };
  double index = 0, sum_rows = 0, sum_cols = 0;
  for (const auto& [key, m] : joint) index += pairs(m);
  for (const auto& [key, m] : rows) sum_rows += pairs(m);
  for (const auto& [key, m] : cols) sum_cols += pairs(m);
  const double expected = sum_rows * sum_cols / pairs(n);
  const double maximum = 0.5 * (sum_rows + sum_cols);
  if (maximum == expected) return 1.0;  // both labelings trivial (scikit-learn's convention)
  return (index - expected) / (maximum - expected);
}

}  // namespace neuronmap::detail
