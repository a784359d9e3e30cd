// Groups of co-activating neurons from a correlation matrix. Semantics follow the reference
// (shared oracle README, spec_version 2); group ids are positions in a list ordered by smallest member.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "analysis/correlation.hpp"
#include "neuronmap/options.hpp"

namespace neuronmap::detail {

struct GroupingResult {
  std::vector<std::int32_t> labels;               ///< per neuron: group id or -1
  std::vector<std::vector<std::int32_t>> groups;  ///< members, ascending; ordered by smallest member
  std::vector<double> cohesion;                   ///< per group: clip(mean r over pairs, 0, 1)
  /// Per group: the smallest mean correlation of a member with the rest of its group (not clipped;
  /// 1 for a single neuron). Correlation clustering guarantees it is >= its threshold.
  std::vector<double> min_member_correlation;

  // Diagnostics, named as in the reference's JSON.
  std::int64_t n_raw_clusters = 0;  ///< clusters before min_group_size
  std::int64_t n_edges = 0;         ///< correlation, components: pairs with r >= threshold
  double quality = 0.0;             ///< correlation: the CPM quality of the kept partition
  std::vector<double> quality_by_restart;  ///< correlation: the quality each restart reached
  int sweeps = 0;                   ///< correlation: move sweeps of the kept restart
  int chosen_k = 0;                 ///< kmeans: the k used
  double inertia = 0.0;             ///< kmeans: sum of squared distances to the centroids (z-score units)
  int n_iter = 0;                   ///< kmeans: Lloyd iterations of the best run
  std::vector<std::pair<int, double>> silhouette_by_k;  ///< kmeans with automatic k
};

/// The reference's random stream (spec v2), so that restarts draw the same orders as reference.py.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) noexcept : state_(seed) {}
  std::uint64_t next() noexcept;
  /// Fisher-Yates from the last position down: swap p[i] with p[next() % (i + 1)], i = n-1 .. 1.
  std::vector<std::int32_t> permutation(std::int32_t n);

 private:
  std::uint64_t state_;
};

/// Correlation clustering (spec v2): the partition of the live neurons maximising the Constant Potts
/// Model quality sum over same-group pairs of (r_ij - threshold), by KwikCluster pivots on r >= threshold
/// in n_init random orders, then single-neuron moves; the best restart is kept (see docs/ANALYSIS.md).
/// Every member's mean correlation with the rest of its group is >= threshold. Dead neurons are in no
/// group. Restarts run in parallel in the calling TBB arena; the result does not depend on it.
GroupingResult correlation_groups(const Correlation& corr, double threshold, int min_group_size, int n_init = 10,
                                  std::uint64_t seed = 42);

/// Spec v1, kept for comparison only: the connected components of r >= threshold with at least
/// min_group_size members. Components chain: two members may be uncorrelated.
GroupingResult threshold_components(const Correlation& corr, double threshold, int min_group_size);

/// Pairs i < j of live neurons with r_ij >= threshold (all neurons when `live` is empty).
std::int64_t count_edges(const Correlation& corr, double threshold, const std::vector<std::int32_t>& live);

/// One row of a scipy linkage matrix: clusters `a` < `b` (ids >= n are earlier rows) merge at
/// `height` into a cluster of `size` neurons.
struct Merge {
  std::int32_t a = 0, b = 0;
  double height = 0.0;
  std::int32_t size = 0;
};

/// Average linkage on the distance 1 - r; identical to scipy's
/// linkage(squareform(1 - C), method="average") (its nearest-neighbour chain, tie-breaking included,
/// then the stable sort by height and relabelling). O(n^2) memory: one n x n working matrix in the
/// correlation's precision.
std::vector<Merge> average_linkage(const Correlation& corr);
/// scipy fcluster(Z, t, "distance"): raw cluster labels (0-based, arbitrary order).
std::vector<std::int32_t> cut_tree_at_distance(const std::vector<Merge>& linkage, std::int64_t n, double t);
/// scipy fcluster(Z, k, "maxclust"): at most k clusters (fewer when merge heights tie at the cut).
std::vector<std::int32_t> cut_tree_to_clusters(const std::vector<Merge>& linkage, std::int64_t n, int k);
/// Average linkage cut at distance 1 - threshold, or into n_groups clusters when n_groups > 0.
GroupingResult hierarchical_groups(const Correlation& corr, double threshold, int n_groups, int min_group_size);

/// K-means of the neurons' z-scored activation profiles (see docs/ANALYSIS.md): computed from the
/// correlation alone through the kernel identity z_i . z_j = S C'_ij, k-means++ (greedy, as
/// scikit-learn) seeding, n_init restarts, each run by Lloyd to convergence and then (refine) by
/// Hartigan's single-neuron moves until no move lowers the inertia; best inertia kept.
/// Deterministic for a seed. refine = false is plain Lloyd (for tests and comparisons).
struct KMeansFit {
  std::vector<std::int32_t> labels;  ///< 0..k-1
  double inertia = 0.0;              ///< in the units of the z-scored profiles (scaled by n_samples)
  int n_iter = 0;                    ///< Lloyd iterations of the best run
  std::int64_t n_moves = 0;          ///< Hartigan moves of the best run after Lloyd
};
KMeansFit kmeans_fit(const Correlation& corr, int k, int n_init, std::uint64_t seed, bool refine = true);
/// Hartigan's single-neuron moves from a given partition (labels in [0, k)) until no move lowers the
/// inertia; the refinement kmeans_fit applies after Lloyd. n_iter = 0.
KMeansFit kmeans_refine(const Correlation& corr, std::vector<std::int32_t> labels, int k);
/// Mean silhouette (scikit-learn's silhouette_score, Euclidean on the z-scored profiles), with the
/// distances derived from the correlation: ||z_i - z_j|| = sqrt(2 S (1 - C_ij)).
double silhouette_score(const Correlation& corr, const std::vector<std::int32_t>& labels);
/// K-means with n_groups clusters, or (n_groups <= 0) the k in 2..min(10, n - 1) with the best
/// silhouette (first maximum wins).
GroupingResult kmeans_groups(const Correlation& corr, int n_groups, int n_init, std::uint64_t seed,
                             int min_group_size);

/// Dispatches on options.method.
GroupingResult group_neurons(const Correlation& corr, const Grouping& options);

/// Orders clusters canonically, drops the small ones, and fills labels, cohesion and
/// min_member_correlation.
GroupingResult finish_groups(const Correlation& corr, std::vector<std::vector<std::int32_t>> clusters,
                             int min_group_size);
/// Same, from raw per-neuron cluster labels (any non-negative ints; -1: in no cluster).
GroupingResult finish_groups(const Correlation& corr, const std::vector<std::int32_t>& raw_labels,
                             int min_group_size);

/// Adjusted Rand index of two labelings (each label value one cluster, -1 included).
double adjusted_rand_index(const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b);

}  // namespace neuronmap::detail
