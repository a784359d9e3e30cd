// Learning phases on planted loss curves and representations; events and their summary on a planted run.
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include <Eigen/Core>
#include <gtest/gtest.h>

#include "learning/learning.hpp"

namespace nl = neuronmap::detail::learning;

namespace {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();

nl::PhaseInput interval(double previous_loss, double loss, double cka, double previous_cka = nan_value) {
  nl::PhaseInput in;
  in.previous_epoch = 5;
  in.epoch = 10;
  in.previous_loss = previous_loss;
  in.loss = loss;
  in.cka = cka;
  in.previous_cka = previous_cka;
  return in;
}

nl::LearningPhase phase(const nl::PhaseInput& in) { return nl::classify_phase(in, nl::LearningOptions{}); }

}  // namespace

TEST(Phases, Rules) {
  using P = nl::LearningPhase;
  EXPECT_NEAR(nl::relative_loss_change_per_epoch(interval(1.0, 0.5, 0.5)), -0.1, 1e-12);
  EXPECT_EQ(phase(interval(1.0, 0.5, 0.5)), P::rapid);                 // -10 %/epoch
  EXPECT_EQ(phase(interval(0.3, 0.33, 0.99)), P::unstable);             // +2 %/epoch
  EXPECT_EQ(phase(interval(0.3, 0.2999, 0.995)), P::plateau);           // -0.007 %/epoch, CKA 0.995
  EXPECT_EQ(phase(interval(0.3, 0.2999, 0.9)), P::refinement);          // flat loss, moving representation
  EXPECT_EQ(phase(interval(0.3, 0.2925, 0.9)), P::refinement);          // -0.5 %/epoch
  EXPECT_EQ(phase(interval(0.3, 0.2925, 0.6, 0.95)), P::unstable);      // CKA fell by 0.35
  EXPECT_EQ(phase(interval(1.0, 0.5, 0.2, 0.95)), P::rapid);            // fast learning moves representations
  EXPECT_EQ(phase(interval(nan_value, 0.3, 0.99)), P::plateau);         // no loss: CKA alone
  EXPECT_EQ(phase(interval(0.3, 0.2999, nan_value)), P::plateau);       // no CKA: loss alone
  EXPECT_EQ(phase(interval(nan_value, nan_value, nan_value)), P::unknown);
  EXPECT_STREQ(nl::to_string(P::plateau), "plateau");
}

// A representation that changes less and less (X_t = X_t-1 + 0.5^t noise) under a loss that falls fast and
// then levels off: CKA to the previous snapshot rises towards 1, the phases go from rapid to plateau.
TEST(Phases, PlantedRunFromRapidToPlateau) {
  std::mt19937 rng(21);
  std::normal_distribution<double> normal;
  using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  RowMatrix x(64, 32);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = normal(rng);
  std::vector<double> ckas;
  std::vector<nl::LearningPhase> phases;
  double previous_loss = 0.1 + 2.0;
  double previous_cka = nan_value;
  for (int t = 1; t <= 8; ++t) {
    RowMatrix next = x;
    for (Eigen::Index i = 0; i < next.size(); ++i) next.data()[i] += std::pow(0.5, t) * normal(rng);
    const double cka = nl::linear_cka(nl::MatrixView<double>{x.data(), x.rows(), x.cols()},
                                      nl::MatrixView<double>{next.data(), next.rows(), next.cols()});
    const double loss = 0.1 + 2.0 * std::exp(-1.5 * t);
    nl::PhaseInput in;
    in.previous_epoch = 5 * (t - 1);
    in.epoch = 5 * t;
    in.previous_loss = previous_loss;
    in.loss = loss;
    in.cka = cka;
    in.previous_cka = previous_cka;
    ckas.push_back(cka);
    phases.push_back(phase(in));
    x = next;
    previous_loss = loss;
    previous_cka = cka;
  }
  for (std::size_t k = 1; k < ckas.size(); ++k) EXPECT_GT(ckas[k], ckas[k - 1]) << "CKA rises as changes shrink";
  EXPECT_GT(ckas.back(), 0.999);
  EXPECT_LT(ckas.front(), 0.98);
  EXPECT_EQ(phases.front(), nl::LearningPhase::rapid);
  EXPECT_EQ(phases.back(), nl::LearningPhase::plateau);
  for (auto p : phases) EXPECT_NE(p, nl::LearningPhase::unstable);
}

namespace {

neuronmap::Group make_group(int id, std::int32_t first, std::int32_t last, double cohesion, std::string skill) {
  neuronmap::Group g;
  g.group_id = id;
  g.layer_name = "fc1";
  g.neuron_indices.resize(static_cast<std::size_t>(last - first + 1));
  std::iota(g.neuron_indices.begin(), g.neuron_indices.end(), first);
  g.cohesion_score = cohesion;
  g.skill_category = std::move(skill);
  return g;
}

std::vector<nl::EventKind> kinds(const std::vector<nl::LearningEvent>& events) {
  std::vector<nl::EventKind> out;
  for (const auto& e : events) out.push_back(e.kind);
  return out;
}

const nl::LearningEvent& only(const std::vector<nl::LearningEvent>& events, nl::EventKind kind) {
  const nl::LearningEvent* found = nullptr;
  int count = 0;
  for (const auto& e : events) {
    if (e.kind == kind) found = &e, ++count;
  }
  EXPECT_EQ(count, 1) << nl::to_string(kind);
  static const nl::LearningEvent none;
  return found ? *found : none;
}

}  // namespace

// The planted sequence of test_lineage.cpp, now as snapshots with skills, losses and dormant rates.
TEST(Events, PlantedRunThroughLayerLearning) {
  using K = nl::EventKind;
  nl::LayerLearning layer("fc1");
  std::vector<nl::LearningEvent> all;

  // Epoch 5: A (logical), B (memory). The baseline: lineages, no events.
  auto s0 = layer.update(5, 2.0, {make_group(0, 0, 9, 0.7, "logical"), make_group(1, 20, 24, 0.6, "memory")}, 0.10);
  EXPECT_TRUE(s0.events.empty());
  EXPECT_EQ(s0.phase, nl::LearningPhase::unknown);
  EXPECT_EQ(s0.transitions.size(), 2u);

  // Epoch 10: A splits, C (mathematical) emerges; the dormant rate falls by 0.08.
  auto s1 = layer.update(10, 1.0,
                         {make_group(0, 0, 5, 0.7, "logical"), make_group(1, 6, 9, 0.7, "mixed"),
                          make_group(2, 20, 24, 0.6, "memory"), make_group(3, 30, 33, 0.5, "mathematical")},
                         0.02);
  EXPECT_EQ(kinds(s1.events), (std::vector<K>{K::split, K::emerged, K::dormant_change}));
  const auto& split = only(s1.events, K::split);
  EXPECT_EQ(split.skill_category, "logical");  // the group that split
  EXPECT_EQ(split.lineage_ids, (std::vector<std::int64_t>{0, 2}));
  EXPECT_DOUBLE_EQ(split.loss_change, -1.0);
  EXPECT_EQ(split.epoch, 10);
  EXPECT_EQ(split.previous_epoch, 5);
  EXPECT_EQ(split.layer, "fc1");
  const auto& dormant = only(s1.events, K::dormant_change);
  EXPECT_NEAR(dormant.change, -0.08, 1e-12);
  EXPECT_NEAR(dormant.strength, 0.08 / 0.25, 1e-12);
  EXPECT_TRUE(dormant.skill_category.empty());
  EXPECT_EQ(only(s1.events, K::emerged).skill_category, "mathematical");
  EXPECT_EQ(s1.phase, nl::LearningPhase::rapid);  // -10 %/epoch
  all.insert(all.end(), s1.events.begin(), s1.events.end());

  // Epoch 15: the parts merge (lineage 0 continues), B grows, C's cohesion jumps by 0.3.
  auto s2 = layer.update(15, 0.9,
                         {make_group(0, 0, 9, 0.9, "logical"), make_group(1, 20, 27, 0.6, "memory"),
                          make_group(2, 30, 33, 0.8, "mathematical")},
                         0.03);
  EXPECT_EQ(kinds(s2.events), (std::vector<K>{K::merged, K::grew, K::cohesion_jump, K::cohesion_jump}));
  EXPECT_EQ(s2.lineage_ids, (std::vector<std::int64_t>{0, 1, 3}));
  // Two continued lineages changed cohesion: 0 (0.7 -> 0.9) and 3 (0.5 -> 0.8).
  EXPECT_NEAR(s2.events[2].change, 0.2, 1e-12);
  EXPECT_NEAR(s2.events[2].strength, 0.4, 1e-12);
  EXPECT_EQ(s2.events[3].lineage_ids, (std::vector<std::int64_t>{3}));
  EXPECT_NEAR(s2.events[3].strength, 0.6, 1e-12);
  EXPECT_EQ(s2.events[3].skill_category, "mathematical");
  EXPECT_NEAR(only(s2.events, K::grew).strength, 0.375, 1e-12);
  EXPECT_NEAR(only(s2.events, K::merged).loss_change, -0.1, 1e-12);
  all.insert(all.end(), s2.events.begin(), s2.events.end());

  // Epoch 20: the merged group dissolves, B shrinks; nothing else moves.
  auto s3 = layer.update(20, 0.9, {make_group(0, 20, 23, 0.6, "memory"), make_group(1, 30, 33, 0.8, "mathematical")},
                         0.03, 0.995);
  EXPECT_EQ(kinds(s3.events), (std::vector<K>{K::shrank, K::dissolved}));
  EXPECT_EQ(only(s3.events, K::dissolved).skill_category, "logical");
  EXPECT_DOUBLE_EQ(only(s3.events, K::dissolved).strength, 0.9);
  EXPECT_EQ(s3.phase, nl::LearningPhase::plateau);
  all.insert(all.end(), s3.events.begin(), s3.events.end());

  const auto summary = nl::summarize(all);
  EXPECT_EQ(summary.total_events, 9);
  EXPECT_EQ(summary.events_per_kind.at("cohesion_jump"), 2);
  EXPECT_EQ(summary.events_per_kind.at("split"), 1);
  EXPECT_EQ(summary.events_per_kind.count("survived"), 0u);
  EXPECT_EQ(summary.skill_distribution.at("logical"), 4);  // split, merged, jump of lineage 0, dissolved
  EXPECT_EQ(summary.skill_distribution.at("mathematical"), 2);
  EXPECT_EQ(summary.skill_distribution.at("memory"), 2);
  double strength_sum = 0.0;
  for (const auto& e : all) {
    EXPECT_GE(e.strength, 0.0);
    EXPECT_LE(e.strength, 1.0);
    strength_sum += e.strength;
  }
  EXPECT_NEAR(summary.average_strength, strength_sum / 9.0, 1e-12);
  EXPECT_EQ(nl::summarize({}).average_strength, 0.0);
}

// Skills from planted activation patterns flow into the events.
TEST(Events, SkillFromTaggedPatterns) {
  const std::vector<std::string> tag_names{"mathematical", "linguistic"};
  std::vector<std::int32_t> tags;
  std::vector<float> math_only, both;
  for (int k = 0; k < 20; ++k) {
    tags.push_back(k % 2);
    math_only.push_back(k % 2 == 0 ? 1.0f : 0.0f);
    both.push_back(0.5f + 0.01f * static_cast<float>(k % 3));
  }
  auto g0 = make_group(0, 0, 4, 0.8, ""), g1 = make_group(1, 10, 14, 0.8, "");
  g0.activation_pattern = math_only;
  g1.activation_pattern = both;
  for (auto* g : {&g0, &g1}) g->skill_category = nl::class_selectivity(g->activation_pattern, tags, tag_names, {}).category;
  EXPECT_EQ(g0.skill_category, "mathematical");
  EXPECT_EQ(g1.skill_category, "mixed");

  nl::LayerLearning layer("fc2");
  layer.update(1, nan_value, {});
  const auto step = layer.update(2, nan_value, {g0, g1});
  ASSERT_EQ(step.events.size(), 2u);
  EXPECT_EQ(step.events[0].skill_category, "mathematical");
  EXPECT_EQ(step.events[1].skill_category, "mixed");
  EXPECT_TRUE(std::isnan(step.events[0].loss_change));
  EXPECT_EQ(step.phase, nl::LearningPhase::unknown);
}
