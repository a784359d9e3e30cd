// Per-sample learning events (the original tool's PyTorchLearningEvent rule) on planted rows.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "learning/sample_events.hpp"
#include "neuronmap/errors.hpp"

namespace neuronmap::detail::learning {
namespace {

TEST(SampleEvents, HandComputedRow) {
  // Row 0: mean 2, unbiased std 1.8257 -> threshold 2.9129; group {2,3} mean 3.5 fires, {0,1} (0.5) not.
  // Row 1: all equal -> threshold 1, no group mean exceeds it.
  const std::vector<float> rows = {0, 1, 3, 4, 1, 1, 1, 1};
  const auto e = sample_events(rows.data(), 2, 4, {{0, 1}, {2, 3}});
  ASSERT_EQ(e.samples, (std::vector<std::int64_t>{0}));
  ASSERT_EQ(e.activated.size(), 1u);
  EXPECT_EQ(e.activated[0], (std::vector<std::int32_t>{1}));
  EXPECT_DOUBLE_EQ(e.strength[0], 3.5);
}

TEST(SampleEvents, SigmaMovesTheThreshold) {
  const std::vector<double> rows = {0, 1, 2.75, 4};
  // Mean 1.9375, unbiased std 1.7839: neuron 2 (2.75) exceeds 1.9375 + 0.3 std (2.4727) but not + 0.5 std (2.8294).
  EXPECT_TRUE(sample_events(rows.data(), 1, 4, {{2}}).samples.empty());
  EXPECT_EQ(sample_events(rows.data(), 1, 4, {{2}}, 0.3).samples.size(), 1u);
}

TEST(SampleEvents, PlantedGroupsFireOnTheirRows) {
  // 60 rows x 20 neurons of noise; group k (5 neurons) is driven on rows r with r % 3 == k.
  std::mt19937 rng(7);
  std::normal_distribution<float> noise(0.0f, 0.1f);
  const int n_rows = 60, n = 20;
  std::vector<std::vector<std::int32_t>> groups = {{0, 1, 2, 3, 4}, {5, 6, 7, 8, 9}, {10, 11, 12, 13, 14}};
  std::vector<float> rows(static_cast<std::size_t>(n_rows * n));
  for (int r = 0; r < n_rows; ++r)
    for (int j = 0; j < n; ++j) rows[static_cast<std::size_t>(r * n + j)] = noise(rng) + (j / 5 == r % 3 ? 2.0f : 0.0f);
  const auto e = sample_events(rows.data(), n_rows, n, groups);
  ASSERT_EQ(e.samples.size(), static_cast<std::size_t>(n_rows));
  for (std::size_t k = 0; k < e.samples.size(); ++k) {
    EXPECT_EQ(e.samples[k], static_cast<std::int64_t>(k));
    EXPECT_EQ(e.activated[k], (std::vector<std::int32_t>{static_cast<std::int32_t>(k % 3)}));
    EXPECT_NEAR(e.strength[k], 2.0, 0.2);
  }
}

TEST(SampleEvents, SnapshotOverloadReadsTheReservoir) {
  LayerSnapshot layer;
  layer.n_neurons = 4;
  layer.reservoir = {0, 1, 3, 4, 1, 1, 1, 1, 5, 5, 0, 0};
  Group a, b;
  a.neuron_indices = {0, 1};
  b.neuron_indices = {2, 3};
  layer.groups = {a, b};
  const auto e = sample_events(layer);
  ASSERT_EQ(e.samples, (std::vector<std::int64_t>{0, 2}));
  EXPECT_EQ(e.activated[1], (std::vector<std::int32_t>{0}));
  EXPECT_DOUBLE_EQ(e.strength[1], 5.0);
  layer.reservoir.clear();
  EXPECT_TRUE(sample_events(layer).samples.empty());
}

TEST(SampleEvents, BadGroupsAreUsageErrors) {
  const std::vector<float> rows = {0, 1, 2};
  EXPECT_THROW(sample_events(rows.data(), 1, 3, {{0, 3}}), UsageError);
  EXPECT_THROW(sample_events(rows.data(), 1, 3, {{}}), UsageError);
  EXPECT_THROW(sample_events(rows.data(), 1, 3, {{-1}}), UsageError);
}

}  // namespace
}  // namespace neuronmap::detail::learning
