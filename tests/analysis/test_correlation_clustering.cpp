// Correlation clustering (oracle spec v2): it cannot chain, it keeps every member's mean correlation
// with its group at or above the threshold, and it draws the reference's random orders.
#include <algorithm>
#include <cmath>
#include <random>

#include <gtest/gtest.h>
#include <tbb/task_arena.h>

#include "analysis/grouping.hpp"
#include "analysis_test_util.hpp"

namespace {

using namespace neuronmap::detail;
namespace t = neuronmap::test;

// Every member's mean r with the rest of its group, recomputed directly.
double direct_min_member(const Correlation& corr, const std::vector<std::int32_t>& members) {
  if (members.size() < 2) return 1.0;
  double lowest = 1e300;
  for (const auto a : members) {
    double sum = 0.0;
    for (const auto b : members)
      if (b != a) sum += corr.r(a, b);
    lowest = std::min(lowest, sum / static_cast<double>(members.size() - 1));
  }
  return lowest;
}

void expect_invariant(const Correlation& corr, const GroupingResult& g, double threshold) {
  ASSERT_EQ(g.groups.size(), g.min_member_correlation.size());
  for (std::size_t k = 0; k < g.groups.size(); ++k) {
    SCOPED_TRACE("group " + std::to_string(k));
    EXPECT_NEAR(g.min_member_correlation[k], direct_min_member(corr, g.groups[k]), 1e-12);
    EXPECT_GE(g.min_member_correlation[k], threshold - 1e-12);
    EXPECT_GE(g.cohesion[k], threshold - 1e-12);
    for (const auto m : g.groups[k]) EXPECT_FALSE(corr.dead[static_cast<std::size_t>(m)]) << "dead member " << m;
  }
}

// x_i = 0.7 x_(i-1) + noise: neighbours correlate ~0.7, neurons two apart ~0.49, far ones ~0.
Eigen::MatrixXd ar1_chain(std::int64_t samples, int neurons, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  Eigen::MatrixXd x(samples, neurons);
  for (std::int64_t s = 0; s < samples; ++s) {
    double previous = normal(rng);
    for (int i = 0; i < neurons; ++i) {
      previous = 0.7 * previous + normal(rng);
      x(s, i) = previous;
    }
  }
  return x;
}

TEST(SplitMix64, DrawsTheReferenceStream) {
  // reference.py: SplitMix64(42).next() x 3, and SplitMix64(7).permutation(10).
  SplitMix64 rng(42);
  EXPECT_EQ(rng.next(), 0xbdd732262feb6e95ULL);
  EXPECT_EQ(rng.next(), 0x28efe333b266f103ULL);
  EXPECT_EQ(rng.next(), 0x47526757130f9f52ULL);
  EXPECT_EQ(SplitMix64(7).permutation(10), (std::vector<std::int32_t>{8, 1, 5, 9, 0, 4, 3, 2, 6, 7}));
}

TEST(CorrelationClustering, ChainIsNotOneGroup) {
  const Correlation corr = correlation_from_samples(ar1_chain(5000, 200, 3));
  const GroupingResult cpm = correlation_groups(corr, 0.6, 3);
  for (const auto& members : cpm.groups) EXPECT_LE(members.size(), 3u);
  expect_invariant(corr, cpm, 0.6);
  // Spec v1 joins the whole chain through its strong neighbour links.
  const GroupingResult components = threshold_components(corr, 0.6, 3);
  ASSERT_EQ(components.groups.size(), 1u);
  EXPECT_EQ(components.groups[0].size(), 200u);
  EXPECT_LT(components.min_member_correlation[0], 0.1);
}

TEST(CorrelationClustering, BridgeNeuronDoesNotJoinTwoGroups) {
  // Groups A = 0..9 and B = 11..20 (r = 0.8 inside, 0 across); neuron 10 correlates 0.7 with all of both.
  const int n = 21;
  Eigen::MatrixXd c = Eigen::MatrixXd::Identity(n, n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      if (i == j) continue;
      const bool a = i < 10 && j < 10, b = i > 10 && j > 10;
      if (a || b) c(i, j) = 0.8;
      if (i == 10 || j == 10) c(i, j) = 0.7;
    }
  const Correlation corr = t::correlation_of_matrix(c);
  const GroupingResult cpm = correlation_groups(corr, 0.6, 3);
  ASSERT_EQ(cpm.groups.size(), 2u);
  const auto& first = cpm.groups[0];
  const auto& second = cpm.groups[1];
  for (int i = 0; i < 10; ++i) EXPECT_NE(std::find(first.begin(), first.end(), i), first.end());
  for (int i = 11; i < n; ++i) EXPECT_NE(std::find(second.begin(), second.end(), i), second.end());
  expect_invariant(corr, cpm, 0.6);
  EXPECT_EQ(threshold_components(corr, 0.6, 3).groups.size(), 1u);
}

TEST(CorrelationClustering, InvariantOnRandomMatrices) {
  std::mt19937_64 seeds(11);
  for (int trial = 0; trial < 12; ++trial) {
    const std::uint64_t seed = seeds();
    const double threshold = 0.3 + 0.05 * (trial % 8);
    const double noise = 0.4 + 0.15 * (trial % 5);
    const auto planted = t::make_planted(400, {4, 9, 6, 15}, 40 + trial, 2, 2, 3, noise, seed);
    const Correlation corr = correlation_from_samples(planted.x);
    SCOPED_TRACE("trial " + std::to_string(trial));
    const GroupingResult g = correlation_groups(corr, threshold, 1 + trial % 3, 1 + trial % 10, seed);
    expect_invariant(corr, g, threshold);
    EXPECT_EQ(g.quality_by_restart.size(), static_cast<std::size_t>(1 + trial % 10));
    // The kept restart is the first that no later one beats by more than 1e-9 |Q| (the reference's rule).
    const double best = *std::max_element(g.quality_by_restart.begin(), g.quality_by_restart.end());
    EXPECT_LE(best - g.quality, 1e-9 * std::max(1.0, std::abs(best)));
  }
}

TEST(CorrelationClustering, PlantedGroupsFoundExactly) {
  const auto planted = t::make_planted(2000, {8, 12, 5, 20, 6}, 60, 3, 3, 4, 0.5, 21);
  const Correlation corr = correlation_from_samples(planted.x);
  const GroupingResult g = correlation_groups(corr, 0.6, 3);
  EXPECT_EQ(g.groups.size(), 5u);
  EXPECT_DOUBLE_EQ(adjusted_rand_index(g.labels, planted.truth), 1.0);
}

TEST(CorrelationClustering, SameGroupsWithOneThreadOrMany) {
  const auto planted = t::make_planted(600, {10, 7, 14}, 80, 1, 1, 2, 0.9, 5);
  const Correlation corr = correlation_from_samples(planted.x);
  GroupingResult one, many;
  tbb::task_arena(1).execute([&] { one = correlation_groups(corr, 0.5, 3, 10, 9); });
  tbb::task_arena(2).execute([&] { many = correlation_groups(corr, 0.5, 3, 10, 9); });
  EXPECT_EQ(one.labels, many.labels);
  EXPECT_EQ(one.quality_by_restart, many.quality_by_restart);
}

TEST(CorrelationClustering, DeadAndEmptyInputs) {
  const Correlation empty = t::correlation_of_matrix(Eigen::MatrixXd(0, 0));
  EXPECT_TRUE(correlation_groups(empty, 0.6, 3).groups.empty());
  Correlation dead = t::correlation_of_matrix(Eigen::MatrixXd::Identity(5, 5));
  dead.dead.assign(5, 1);
  const GroupingResult g = correlation_groups(dead, -1.0, 1);  // a threshold every pair meets
  EXPECT_TRUE(g.groups.empty());
  EXPECT_EQ(g.labels, std::vector<std::int32_t>(5, -1));
}

TEST(CorrelationClustering, MinMemberCorrelationOfOtherMethods) {
  // K-means partitions every neuron, so its groups can be loose; the record says how loose.
  const auto planted = t::make_planted(500, {6, 6}, 30, 0, 0, 0, 0.6, 8);
  const Correlation corr = correlation_from_samples(planted.x);
  const GroupingResult k = kmeans_groups(corr, 3, 10, 42, 3);
  bool some_loose = false;
  for (std::size_t g = 0; g < k.groups.size(); ++g) {
    EXPECT_NEAR(k.min_member_correlation[g], direct_min_member(corr, k.groups[g]), 1e-12);
    some_loose = some_loose || k.cohesion[g] < 0.6;
  }
  EXPECT_TRUE(some_loose) << "a k-means cluster of 30 background neurons should be loose";
}

}  // namespace
