// Head statistics on planted attention patterns, the merge of two workers' sums, and head events.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "learning/head_events.hpp"
#include "stream/head_stats.hpp"

namespace {

using neuronmap::HeadStatistics;
using neuronmap::detail::HeadAccumulator;

constexpr int kPrev = HeadStatistics::kOffsets - 1;  // offset -1 in offset_weight
constexpr int kSelf = HeadStatistics::kOffsets;      // offset 0

// [B, H, T, S] weights as rows (b, t, s) x h, filled by weight(h, t, s).
template <class F>
std::vector<float> planted(std::int64_t B, std::int64_t H, std::int64_t T, std::int64_t S, F weight) {
  std::vector<float> rows(static_cast<std::size_t>(B * T * S * H));
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t s = 0; s < S; ++s)
        for (std::int64_t h = 0; h < H; ++h) rows[static_cast<std::size_t>(((b * T + t) * S + s) * H + h)] = weight(h, t, s);
  return rows;
}

// Head 0: 0.8 on the previous token, the rest spread causally; head 1: uniform over the causal keys;
// head 2: uniform over all keys; head 3: all weight on key 0.
float pattern(std::int64_t h, std::int64_t t, std::int64_t s) {
  if (h == 0) {
    if (s > t) return 0.0f;
    if (t == 0) return 1.0f;
    if (s == t - 1) return 0.8f;
    return 0.2f / static_cast<float>(t);  // t other causal keys
  }
  if (h == 1) return s <= t ? 1.0f / static_cast<float>(t + 1) : 0.0f;
  if (h == 2) return 1.0f / 6.0f;
  return s == 0 ? 1.0f : 0.0f;
}

TEST(HeadStats, PlantedRolesAndFlags) {
  const std::int64_t B = 3, H = 4, T = 6, S = 6;
  const auto rows = planted(B, H, T, S, pattern);
  HeadAccumulator acc;
  acc.add(rows.data(), B * T * S, H, {B, H, T, S});
  const auto heads = acc.finish();
  ASSERT_EQ(heads.size(), 4u);
  for (const auto& h : heads) EXPECT_EQ(h.queries, B * T);
  // Head 0: weight 0.8 on i - 1 for every query that has an i - 1.
  EXPECT_NEAR(heads[0].offset_weight[kPrev], 0.8, 1e-6);
  EXPECT_EQ(heads[0].role, "previous-token");
  EXPECT_FALSE(heads[0].collapsed);
  EXPECT_FALSE(heads[0].uniform);
  EXPECT_NEAR(heads[0].concentration, 0.8, 1e-6);
  EXPECT_LT(heads[0].entropy_mean, 0.7);
  // Head 1: uniform over the keys each query can see: normalised entropy 1 (query 0 has one key: left out).
  EXPECT_NEAR(heads[1].entropy_mean, 1.0, 1e-6);
  EXPECT_NEAR(heads[1].entropy_std, 0.0, 1e-6);
  EXPECT_TRUE(heads[1].uniform);
  EXPECT_EQ(heads[1].role, "uniform");
  // Mean |i - j| of a causal uniform head: (1/T) sum_t t/2.
  double want_distance = 0.0;
  for (int t = 0; t < T; ++t) want_distance += t / 2.0;
  EXPECT_NEAR(heads[1].distance_mean, want_distance / T, 1e-6);
  EXPECT_TRUE(heads[2].uniform);
  EXPECT_NEAR(heads[2].offset_weight[kSelf], 1.0 / 6.0, 1e-6);
  // Head 3: everything on key 0: collapsed.
  EXPECT_TRUE(heads[3].collapsed);
  EXPECT_NEAR(heads[3].collapsed_fraction, 1.0, 1e-12);
  EXPECT_NEAR(heads[3].concentration, 1.0, 1e-12);
  EXPECT_EQ(heads[3].role, "collapsed");
}

TEST(HeadStats, TwoWorkersMergeToOne) {
  const std::int64_t H = 4, T = 6, S = 6;
  const auto a = planted(2, H, T, S, pattern);
  const auto b = planted(3, H, T, S, [](std::int64_t h, std::int64_t t, std::int64_t s) {
    return h == 2 ? (s == t ? 1.0f : 0.0f) : pattern(h, t, s);
  });
  HeadAccumulator one, first, second;
  one.add(a.data(), 2 * T * S, H, {2, H, T, S});
  one.add(b.data(), 3 * T * S, H, {3, H, T, S});
  first.add(a.data(), 2 * T * S, H, {2, H, T, S});
  second.add(b.data(), 3 * T * S, H, {3, H, T, S});
  first.merge(second);
  const auto x = one.finish();
  const auto y = first.finish();
  for (std::size_t h = 0; h < x.size(); ++h) {
    EXPECT_EQ(x[h].queries, y[h].queries);
    EXPECT_DOUBLE_EQ(x[h].entropy_mean, y[h].entropy_mean);
    EXPECT_DOUBLE_EQ(x[h].concentration, y[h].concentration);
    EXPECT_DOUBLE_EQ(x[h].distance_mean, y[h].distance_mean);
    for (std::size_t k = 0; k < x[h].offset_weight.size(); ++k) EXPECT_DOUBLE_EQ(x[h].offset_weight[k], y[h].offset_weight[k]);
  }
  EXPECT_NEAR(y[2].offset_weight[kSelf], (2.0 / 6.0 + 3.0) / 5.0, 1e-7);  // 2 samples at 1/6 (a float), 3 at 1
}

TEST(HeadStats, CrossAttentionHasNoDistanceAndBadShapesThrow) {
  const auto rows = planted(2, 2, 3, 5, [](std::int64_t, std::int64_t, std::int64_t) { return 0.2f; });
  HeadAccumulator acc;
  acc.add(rows.data(), 2 * 3 * 5, 2, {2, 2, 3, 5});
  EXPECT_TRUE(std::isnan(acc.finish()[0].distance_mean));
  EXPECT_THROW(acc.add(rows.data(), 2 * 3 * 5, 2, {2, 2, 5, 5}), std::invalid_argument);
  EXPECT_THROW(acc.add(rows.data(), 2 * 3 * 5, 2, {2, 3, 5}), std::invalid_argument);
}

TEST(HeadStats, EventsWhenAHeadSpecialisesOrCollapses) {
  const std::int64_t H = 4, T = 6, S = 6;
  HeadAccumulator before, after;
  const auto uniform = planted(2, H, T, S, [](std::int64_t, std::int64_t t, std::int64_t s) {
    return s <= t ? 1.0f / static_cast<float>(t + 1) : 0.0f;
  });
  const auto planted_rows = planted(2, H, T, S, pattern);
  before.add(uniform.data(), 2 * T * S, H, {2, H, T, S});
  after.add(planted_rows.data(), 2 * T * S, H, {2, H, T, S});
  neuronmap::LayerSnapshot layer;
  layer.name = "attn";
  layer.heads = after.finish();
  const auto previous = before.finish();
  const auto events = neuronmap::learning::head_events(layer, &previous, 10);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, "head_specialised");
  EXPECT_EQ(events[0].lineages, std::vector<std::int64_t>{0});
  EXPECT_EQ(events[0].skill_category, "previous-token");
  EXPECT_GT(events[0].strength, 0.3);
  EXPECT_EQ(events[1].kind, "head_collapsed");
  EXPECT_EQ(events[1].lineages, std::vector<std::int64_t>{3});
  EXPECT_TRUE(neuronmap::learning::head_events(layer, nullptr, 10).empty());  // the first snapshot is the baseline
}

}  // namespace
