// Average-linkage clustering on 1 - r by the nearest-neighbour chain, step for step as scipy 1.10's
// _hierarchy.nn_chain (same scan order, same preference for the previous chain element on ties, same
// update formula), so the dendrogram and hence every flat cut equal scipy's, ties included.
// Unlike scipy it keeps a full n x n working matrix: a cluster's distances are one contiguous column,
// and merged-away clusters hold +inf, so the nearest-neighbour scan is a plain vectorised minimum.
// Same values, same comparisons, same order: the result is bit-identical (tests/analysis).
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "analysis/grouping.hpp"
#include "analysis/large_buffer.hpp"

namespace neuronmap::detail {
namespace {

template <typename W>
struct ColumnMinimum {
  W value;
  std::int64_t index;
};

// The first index holding the smallest value (scipy scans upwards and replaces only on '<').
template <typename W>
ColumnMinimum<W> first_minimum(const W* column, std::int64_t n) {
  const W best = Eigen::Map<const Eigen::Matrix<W, Eigen::Dynamic, 1>>(column, n).minCoeff();
  std::int64_t index = 0;
  while (index < n && column[index] != best) ++index;
  return {best, index};
}

template <typename W, typename R>
std::vector<Merge> nn_chain(const R& r) {
  const std::int64_t n = r.rows();
  constexpr W inf = std::numeric_limits<W>::infinity();
  // D = clip(1 - C, 0, 2) (scipy's input), the diagonal +inf so that a scan never picks itself.
  LargeVector<W> storage(static_cast<std::size_t>(n * n));
  W* d = storage.data();
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, n, 16), [&](const tbb::blocked_range<std::int64_t>& cols) {
    for (std::int64_t j = cols.begin(); j != cols.end(); ++j) {
      const auto* source = r.col(j).data();
      W* target = d + j * n;
      for (std::int64_t i = 0; i < n; ++i) target[i] = std::clamp(W(1) - static_cast<W>(source[i]), W(0), W(2));
      target[j] = inf;
    }
  });

  // Merges are applied lazily ("pull"): a merge rewrites only the surviving cluster's column and
  // appends (removed, updated) to a log; any other column catches up with the log just before it is
  // read. Writing the matching row into every column instead (n strided stores per merge) took 70%
  // of the time at n = 4096.
  struct Record {
    std::int64_t removed, updated;
  };
  std::vector<Record> log;
  log.reserve(static_cast<std::size_t>(n));
  std::vector<std::size_t> synced(static_cast<std::size_t>(n), 0);  // log records applied per column
  auto pull = [&](std::int64_t c) -> W* {
    W* column = d + c * n;
    const std::size_t end = log.size();
    constexpr std::size_t kAhead = 16;  // each read is a cache miss in another column: overlap them
    for (std::size_t r = synced[static_cast<std::size_t>(c)]; r < end; ++r) {
      if (r + kAhead < end) __builtin_prefetch(d + log[r + kAhead].updated * n + c);
      column[log[r].removed] = inf;
      const std::int64_t y = log[r].updated;  // its column was rewritten after c's last sync
      if (y != c) column[y] = d[y * n + c];
    }
    synced[static_cast<std::size_t>(c)] = log.size();
    return column;
  };

  std::vector<std::int32_t> size(static_cast<std::size_t>(n), 1);
  std::vector<std::int64_t> active(static_cast<std::size_t>(n));  // ascending ids of live clusters
  std::iota(active.begin(), active.end(), 0);
  std::vector<std::int64_t> chain;
  chain.reserve(static_cast<std::size_t>(n));
  std::vector<Merge> merges;
  merges.reserve(static_cast<std::size_t>(std::max<std::int64_t>(n - 1, 0)));
  std::int64_t x = 0, y = 0;
  W current_min = inf;

  for (std::int64_t k = 0; k + 1 < n; ++k) {
    if (chain.empty()) chain.push_back(active.front());
    for (;;) {
      x = chain.back();
      const W* column = pull(x);
      if (chain.size() > 1) {
        y = chain[chain.size() - 2];
        current_min = column[y];
      } else {
        current_min = inf;
      }
      const auto found = first_minimum(column, n);  // removed clusters and x itself hold +inf
      if (found.value < current_min) {
        current_min = found.value;
        y = found.index;
      }
      if (chain.size() > 1 && y == chain[chain.size() - 2]) break;
      chain.push_back(y);
    }
    chain.resize(chain.size() - 2);
    if (x > y) std::swap(x, y);
    const std::int32_t nx = size[static_cast<std::size_t>(x)], ny = size[static_cast<std::size_t>(y)];
    merges.push_back({static_cast<std::int32_t>(x), static_cast<std::int32_t>(y), static_cast<double>(current_min), nx + ny});
    size[static_cast<std::size_t>(x)] = 0;
    size[static_cast<std::size_t>(y)] = nx + ny;
    active.erase(std::lower_bound(active.begin(), active.end(), x));

    // scipy's _average: (size_x * d_xi + size_y * d_yi) / (size_x + size_y), in float64.
    const W* column_x = pull(x);
    W* column_y = pull(y);
    const double wx = nx, wy = ny, total = static_cast<double>(nx + ny);
    for (const std::int64_t i : active) {
      if (i == y) continue;
      column_y[i] = static_cast<W>((wx * static_cast<double>(column_x[i]) + wy * static_cast<double>(column_y[i])) / total);
    }
    column_y[x] = inf;
    log.push_back({x, y});
    synced[static_cast<std::size_t>(y)] = log.size();
  }
  return merges;
}

// scipy's LinkageUnionFind + label(): after the stable sort by height, rows name the current roots.
struct LinkageUnionFind {
  explicit LinkageUnionFind(std::int64_t n) : parent(static_cast<std::size_t>(2 * n - 1)), size(parent.size(), 1), next(n) {
    std::iota(parent.begin(), parent.end(), 0);
  }
  std::int64_t find(std::int64_t x) {
    std::int64_t root = x;
    while (parent[static_cast<std::size_t>(root)] != root) root = parent[static_cast<std::size_t>(root)];
    while (parent[static_cast<std::size_t>(x)] != root) {
      const std::int64_t up = parent[static_cast<std::size_t>(x)];
      parent[static_cast<std::size_t>(x)] = root;
      x = up;
    }
    return root;
  }
  std::int32_t merge(std::int64_t x, std::int64_t y) {
    parent[static_cast<std::size_t>(x)] = next;
    parent[static_cast<std::size_t>(y)] = next;
    const std::int32_t merged = size[static_cast<std::size_t>(x)] + size[static_cast<std::size_t>(y)];
    size[static_cast<std::size_t>(next)] = merged;
    ++next;
    return merged;
  }
  std::vector<std::int64_t> parent;
  std::vector<std::int32_t> size;
  std::int64_t next;
};

// Largest merge height inside each node's subtree (scipy's get_max_dist_for_each_cluster).
std::vector<double> max_heights(const std::vector<Merge>& linkage, std::int64_t n) {
  std::vector<double> out(linkage.size());
  for (std::size_t i = 0; i < linkage.size(); ++i) {
    double h = linkage[i].height;
    for (const std::int32_t child : {linkage[i].a, linkage[i].b}) {
      if (child >= n) h = std::max(h, out[static_cast<std::size_t>(child - n)]);
    }
    out[i] = h;
  }
  return out;
}

// Flat clusters (scipy's cluster_monocrit on the subtree heights): walking down from the root, the
// first node whose subtree's largest height is <= cutoff makes its leaves one cluster; leaves not
// under such a node are singletons. Children always have smaller ids than their parent.
std::vector<std::int32_t> cut(const std::vector<Merge>& linkage, std::int64_t n, double cutoff) {
  const std::vector<double> heights = max_heights(linkage, n);
  std::vector<std::int64_t> flat(static_cast<std::size_t>(2 * n - 1), -1);
  for (std::int64_t node = 2 * n - 2; node >= n; --node) {
    const Merge& m = linkage[static_cast<std::size_t>(node - n)];
    std::int64_t label = flat[static_cast<std::size_t>(node)];
    if (label < 0 && heights[static_cast<std::size_t>(node - n)] <= cutoff) label = node;
    flat[static_cast<std::size_t>(m.a)] = label;
    flat[static_cast<std::size_t>(m.b)] = label;
  }
  std::vector<std::int32_t> labels(static_cast<std::size_t>(n));
  for (std::int64_t leaf = 0; leaf < n; ++leaf) {
    const std::int64_t label = flat[static_cast<std::size_t>(leaf)];
    labels[static_cast<std::size_t>(leaf)] = static_cast<std::int32_t>(label < 0 ? leaf : label);
  }
  return labels;
}

}  // namespace

std::vector<Merge> average_linkage(const Correlation& corr) {
  if (corr.r.rows() < 2) return {};
  std::vector<Merge> merges = corr.r.visit([](const auto& r) {
    using Scalar = typename std::decay_t<decltype(r)>::Scalar;
    return nn_chain<Scalar>(r);
  });
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) { return a.height < b.height; });
  LinkageUnionFind sets(corr.r.rows());
  for (Merge& m : merges) {
    const std::int64_t ra = sets.find(m.a), rb = sets.find(m.b);
    m.a = static_cast<std::int32_t>(std::min(ra, rb));
    m.b = static_cast<std::int32_t>(std::max(ra, rb));
    m.size = sets.merge(ra, rb);
  }
  return merges;
}

std::vector<std::int32_t> cut_tree_at_distance(const std::vector<Merge>& linkage, std::int64_t n, double t) {
  if (n < 2) return std::vector<std::int32_t>(static_cast<std::size_t>(std::max<std::int64_t>(n, 0)), 0);
  return cut(linkage, n, t);
}

std::vector<std::int32_t> cut_tree_to_clusters(const std::vector<Merge>& linkage, std::int64_t n, int k) {
  if (n < 2) return std::vector<std::int32_t>(static_cast<std::size_t>(std::max<std::int64_t>(n, 0)), 0);
  std::vector<std::int32_t> labels(static_cast<std::size_t>(n));
  if (k >= n) {
    std::iota(labels.begin(), labels.end(), 0);
    return labels;
  }
  // scipy's binary search finds the smallest subtree height h with at most k clusters when cutting
  // at h; the cut at h keeps n - #{heights <= h} clusters, so h is the (n - k)-th smallest.
  std::vector<double> heights = max_heights(linkage, n);
  std::sort(heights.begin(), heights.end());
  const auto index = static_cast<std::size_t>(std::max<std::int64_t>(n - std::max(k, 1) - 1, 0));
  return cut(linkage, n, heights[std::min(index, heights.size() - 1)]);
}

GroupingResult hierarchical_groups(const Correlation& corr, double threshold, int n_groups, int min_group_size) {
  const std::int64_t n = corr.r.rows();
  const std::vector<Merge> linkage = average_linkage(corr);
  const std::vector<std::int32_t> raw = n_groups > 0 ? cut_tree_to_clusters(linkage, n, n_groups)
                                                     : cut_tree_at_distance(linkage, n, 1.0 - threshold);
  return finish_groups(corr, raw, min_group_size);
}

}  // namespace neuronmap::detail
