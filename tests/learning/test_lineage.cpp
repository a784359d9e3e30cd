// Lineages: the Hungarian assignment against brute force, and MONIC transitions on planted group sequences.
#include <algorithm>
#include <functional>
#include <numeric>
#include <random>

#include <gtest/gtest.h>

#include "learning/learning.hpp"

namespace nl = neuronmap::detail::learning;

namespace {

// Best total weight over all partial one-to-one assignments (pairs of weight <= 0 add nothing).
double brute_force_best(const std::vector<double>& w, int rows, int cols) {
  std::vector<char> used(static_cast<std::size_t>(cols), 0);
  std::function<double(int)> best = [&](int row) -> double {
    if (row == rows) return 0.0;
    double value = best(row + 1);  // row left unassigned
    for (int c = 0; c < cols; ++c) {
      if (used[c] || w[row * cols + c] <= 0.0) continue;
      used[c] = 1;
      value = std::max(value, w[row * cols + c] + best(row + 1));
      used[c] = 0;
    }
    return value;
  };
  return best(0);
}

std::vector<std::int32_t> range(std::int32_t first, std::int32_t last) {  // [first, last]
  std::vector<std::int32_t> v(static_cast<std::size_t>(last - first + 1));
  std::iota(v.begin(), v.end(), first);
  return v;
}

nl::GroupSet group(int id, std::vector<std::int32_t> neurons, double cohesion = 1.0) {
  return nl::GroupSet{id, std::move(neurons), cohesion};
}

const nl::Transition* find_kind(const nl::LineageUpdate& u, nl::TransitionKind kind) {
  for (const auto& t : u.transitions) {
    if (t.kind == kind) return &t;
  }
  return nullptr;
}

int count_kind(const nl::LineageUpdate& u, nl::TransitionKind kind) {
  return static_cast<int>(std::count_if(u.transitions.begin(), u.transitions.end(),
                                        [&](const nl::Transition& t) { return t.kind == kind; }));
}

}  // namespace

TEST(Hungarian, MatchesBruteForceOnRandomSmallCases) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> size(0, 6);
  std::uniform_real_distribution<double> weight(0.0, 1.0);
  for (int trial = 0; trial < 400; ++trial) {
    const int rows = size(rng), cols = size(rng);
    std::vector<double> w(static_cast<std::size_t>(rows * cols));
    for (auto& v : w) v = weight(rng) < 0.3 ? 0.0 : std::round(weight(rng) * 8.0) / 8.0;  // zeros and ties
    const auto assignment = nl::max_weight_assignment(w, rows, cols);
    ASSERT_EQ(assignment.size(), static_cast<std::size_t>(rows));
    double total = 0.0;
    std::vector<char> used(static_cast<std::size_t>(cols), 0);
    for (int r = 0; r < rows; ++r) {
      const int c = assignment[r];
      if (c < 0) continue;
      ASSERT_LT(c, cols);
      ASSERT_FALSE(used[c]) << "column assigned twice";
      used[c] = 1;
      ASSERT_GT(w[r * cols + c], 0.0) << "a zero-weight pair was reported";
      total += w[r * cols + c];
    }
    EXPECT_NEAR(total, brute_force_best(w, rows, cols), 1e-9) << "trial " << trial << " " << rows << "x" << cols;
  }
}

TEST(Hungarian, BeatsGreedy) {
  // Greedy takes 0.9 and is left with 0; the optimum pairs the two 0.8s.
  const auto a = nl::max_weight_assignment({0.9, 0.8, 0.8, 0.0}, 2, 2);
  EXPECT_EQ(a, (std::vector<int>{1, 0}));
  // Rectangular both ways.
  EXPECT_EQ(nl::max_weight_assignment({0.2, 0.9, 0.5}, 1, 3), (std::vector<int>{1}));
  EXPECT_EQ(nl::max_weight_assignment({0.2, 0.9, 0.5}, 3, 1), (std::vector<int>{-1, 0, -1}));
  EXPECT_TRUE(nl::max_weight_assignment({}, 0, 4).empty());
  EXPECT_EQ(nl::max_weight_assignment({}, 2, 0), (std::vector<int>{-1, -1}));
  EXPECT_THROW(nl::max_weight_assignment({1.0}, 2, 2), std::invalid_argument);
}

TEST(Jaccard, Basics) {
  EXPECT_DOUBLE_EQ(nl::jaccard(range(0, 9), range(0, 5)), 0.6);
  EXPECT_DOUBLE_EQ(nl::jaccard({3, 1, 2}, {1, 2, 3}), 1.0);
  EXPECT_DOUBLE_EQ(nl::jaccard({1, 2}, {3, 4}), 0.0);
  EXPECT_DOUBLE_EQ(nl::jaccard({}, {}), 0.0);
}

TEST(Lineage, FirstSnapshotEmergesEverything) {
  nl::LineageTracker tracker;
  const auto u = tracker.update(std::vector<nl::GroupSet>{group(0, range(0, 3), 0.7), group(1, range(5, 8), 0.4)});
  EXPECT_EQ(u.lineage_ids, (std::vector<std::int64_t>{0, 1}));
  ASSERT_EQ(u.transitions.size(), 2u);
  EXPECT_EQ(count_kind(u, nl::TransitionKind::emerged), 2);
  EXPECT_DOUBLE_EQ(u.transitions[0].strength, 0.7);  // emerged: the group's cohesion
  EXPECT_EQ(tracker.next_lineage_id(), 2);
}

// A forms, splits, its parts merge back, then the merged group dissolves; B survives, grows, shrinks;
// C emerges and survives.
TEST(Lineage, PlantedFormSplitMergeDissolve) {
  nl::LineageTracker tracker;
  // t0: A = 0..9, B = 20..24
  auto u0 = tracker.update(std::vector<nl::GroupSet>{group(0, range(0, 9), 0.7), group(1, range(20, 24), 0.6)});
  EXPECT_EQ(u0.lineage_ids, (std::vector<std::int64_t>{0, 1}));

  // t1: A splits into A1 = 0..5 (Jaccard 0.6 with A: keeps its lineage) and A2 = 6..9; C = 30..33 emerges.
  auto u1 = tracker.update(std::vector<nl::GroupSet>{group(0, range(0, 5)), group(1, range(6, 9)), group(2, range(20, 24)),
                                                     group(3, range(30, 33), 0.5)});
  EXPECT_EQ(u1.lineage_ids, (std::vector<std::int64_t>{0, 2, 1, 3}));
  EXPECT_EQ(u1.matched_previous, (std::vector<int>{0, -1, 1, -1}));
  ASSERT_EQ(u1.transitions.size(), 3u);
  const auto* split = find_kind(u1, nl::TransitionKind::split);
  ASSERT_NE(split, nullptr);
  EXPECT_EQ(split->old_group_ids, (std::vector<int>{0}));
  EXPECT_EQ(split->old_lineage_ids, (std::vector<std::int64_t>{0}));
  EXPECT_EQ(split->new_group_ids, (std::vector<int>{0, 1}));  // largest part first
  EXPECT_EQ(split->new_lineage_ids, (std::vector<std::int64_t>{0, 2}));
  EXPECT_DOUBLE_EQ(split->strength, 1.0);  // every member of A is in a part
  const auto* survived = find_kind(u1, nl::TransitionKind::survived);
  ASSERT_NE(survived, nullptr);
  EXPECT_EQ(survived->new_lineage_ids, (std::vector<std::int64_t>{1}));
  EXPECT_DOUBLE_EQ(survived->strength, 0.0);  // 1 - Jaccard
  const auto* emerged = find_kind(u1, nl::TransitionKind::emerged);
  ASSERT_NE(emerged, nullptr);
  EXPECT_EQ(emerged->new_group_ids, (std::vector<int>{3}));
  EXPECT_DOUBLE_EQ(emerged->strength, 0.5);

  // t2: A1 and A2 merge into M = 0..9 (continues A1's lineage 0); B grows to 20..27; C survives.
  auto u2 = tracker.update(
      std::vector<nl::GroupSet>{group(0, range(0, 9), 0.9), group(1, range(20, 27)), group(2, range(30, 33))});
  EXPECT_EQ(u2.lineage_ids, (std::vector<std::int64_t>{0, 1, 3}));
  ASSERT_EQ(u2.transitions.size(), 3u);
  const auto* merged = find_kind(u2, nl::TransitionKind::merged);
  ASSERT_NE(merged, nullptr);
  EXPECT_EQ(merged->old_group_ids, (std::vector<int>{0, 1}));
  EXPECT_EQ(merged->old_lineage_ids, (std::vector<std::int64_t>{0, 2}));
  EXPECT_EQ(merged->new_lineage_ids, (std::vector<std::int64_t>{0}));
  EXPECT_DOUBLE_EQ(merged->strength, 1.0);
  const auto* grew = find_kind(u2, nl::TransitionKind::grew);
  ASSERT_NE(grew, nullptr);
  EXPECT_NEAR(grew->strength, 1.0 - 5.0 / 8.0, 1e-12);
  EXPECT_EQ(count_kind(u2, nl::TransitionKind::survived), 1);
  EXPECT_EQ(count_kind(u2, nl::TransitionKind::dissolved), 0);  // A2 went into the merge

  // t3: M dissolves; B shrinks to 20..23 (Jaccard 0.5: still a match); C survives.
  auto u3 = tracker.update(std::vector<nl::GroupSet>{group(0, range(20, 23)), group(1, range(30, 33))});
  EXPECT_EQ(u3.lineage_ids, (std::vector<std::int64_t>{1, 3}));
  const auto* dissolved = find_kind(u3, nl::TransitionKind::dissolved);
  ASSERT_NE(dissolved, nullptr);
  EXPECT_EQ(dissolved->old_lineage_ids, (std::vector<std::int64_t>{0}));
  EXPECT_DOUBLE_EQ(dissolved->strength, 0.9);  // the dissolved group's cohesion
  const auto* shrank = find_kind(u3, nl::TransitionKind::shrank);
  ASSERT_NE(shrank, nullptr);
  EXPECT_DOUBLE_EQ(shrank->strength, 0.5);
  EXPECT_EQ(tracker.next_lineage_id(), 4);
}

TEST(Lineage, SmallSizeChangeIsSurvivalAndThresholdsAreOptions) {
  nl::LineageTracker tracker;
  tracker.update(std::vector<nl::GroupSet>{group(0, range(0, 9))});
  auto u = tracker.update(std::vector<nl::GroupSet>{group(0, range(0, 10))});  // +10 %
  EXPECT_EQ(count_kind(u, nl::TransitionKind::survived), 1);
  u = tracker.update(std::vector<nl::GroupSet>{group(0, range(0, 12))});  // 11 -> 13: +18 %
  EXPECT_EQ(count_kind(u, nl::TransitionKind::survived), 1);

  nl::LearningOptions strict;
  strict.match_threshold = 0.9;
  nl::LineageTracker strict_tracker(strict);
  strict_tracker.update(std::vector<nl::GroupSet>{group(0, range(0, 9))});
  u = strict_tracker.update(std::vector<nl::GroupSet>{group(0, range(0, 7))});  // Jaccard 0.8 < 0.9
  EXPECT_EQ(u.lineage_ids, (std::vector<std::int64_t>{1}));
  EXPECT_EQ(count_kind(u, nl::TransitionKind::dissolved), 1);
  EXPECT_EQ(count_kind(u, nl::TransitionKind::emerged), 1);
}

TEST(Lineage, OptimalMatchingDecidesWhoContinues) {
  // With a low match threshold two old groups compete for two new ones: greedy would give A its best
  // match X (Jaccard 0.5) and leave B nothing; the optimum A -> Y (0.4) plus B -> X (0.25) totals 0.65.
  nl::LearningOptions options;
  options.match_threshold = 0.2;
  nl::LineageTracker tracker(options);
  tracker.update(std::vector<nl::GroupSet>{group(0, range(0, 9)), group(1, {10, 11})});
  auto u = tracker.update(std::vector<nl::GroupSet>{group(0, {0, 1, 2, 3, 4, 5, 10, 11}), group(1, range(6, 9))});
  EXPECT_EQ(u.matched_previous, (std::vector<int>{1, 0}));
  EXPECT_EQ(u.lineage_ids, (std::vector<std::int64_t>{1, 0}));
}

TEST(Lineage, EveryGroupIsInSomeTransition) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 100; ++trial) {
    // Random partitions of 40 neurons into groups (labels -1 = ungrouped).
    auto random_groups = [&]() {
      std::uniform_int_distribution<int> label(-1, 5);
      std::vector<std::vector<std::int32_t>> members(6);
      for (std::int32_t n = 0; n < 40; ++n) {
        const int l = label(rng);
        if (l >= 0) members[l].push_back(n);
      }
      std::vector<nl::GroupSet> groups;
      for (auto& m : members) {
        if (m.size() >= 2) groups.push_back(group(static_cast<int>(groups.size()), m, 0.5));
      }
      return groups;
    };
    nl::LineageTracker tracker;
    const auto old_groups = random_groups();
    tracker.update(old_groups);
    const auto new_groups = random_groups();
    const auto u = tracker.update(new_groups);
    std::vector<int> old_seen(old_groups.size(), 0), new_seen(new_groups.size(), 0);
    for (const auto& t : u.transitions) {
      EXPECT_GE(t.strength, 0.0);
      EXPECT_LE(t.strength, 1.0);
      for (int id : t.old_group_ids) ++old_seen[id];
      for (int id : t.new_group_ids) ++new_seen[id];
    }
    for (int s : old_seen) EXPECT_GE(s, 1);
    for (int s : new_seen) EXPECT_GE(s, 1);
    // Lineage ids of one snapshot are distinct.
    auto ids = u.lineage_ids;
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());
  }
}
