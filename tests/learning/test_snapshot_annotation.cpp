// The learning analysis on the snapshot model: reservoir CKA by sample id, layer annotation, phases, events.
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include <gtest/gtest.h>

#include "learning/learning.hpp"

namespace nl = neuronmap::detail::learning;

namespace {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();

neuronmap::LayerSnapshot random_layer(std::int64_t rows, std::int64_t neurons, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  neuronmap::LayerSnapshot layer;
  layer.name = "fc1";
  layer.n_neurons = neurons;
  for (std::int64_t r = 0; r < rows; ++r) layer.reservoir_ids.push_back(100 + r);
  layer.reservoir.resize(static_cast<std::size_t>(rows * neurons));
  for (auto& v : layer.reservoir) v = normal(rng);
  return layer;
}

}  // namespace

TEST(ReservoirCka, AlignsRowsBySampleId) {
  const auto a = random_layer(30, 6, 1);
  auto b = random_layer(30, 4, 2);
  const double direct = nl::reservoir_cka(a, b);  // same ids, same order
  EXPECT_GT(direct, 0.0);
  // The same rows of b in reverse order, plus a sample a never saw: the result does not change.
  neuronmap::LayerSnapshot shuffled = b;
  shuffled.reservoir.clear();
  shuffled.reservoir_ids.clear();
  for (std::int64_t r = 29; r >= 0; --r) {
    shuffled.reservoir_ids.push_back(b.reservoir_ids[r]);
    shuffled.reservoir.insert(shuffled.reservoir.end(), b.reservoir.begin() + r * 4, b.reservoir.begin() + (r + 1) * 4);
  }
  shuffled.reservoir_ids.push_back(999);
  shuffled.reservoir.insert(shuffled.reservoir.end(), {1.0f, 2.0f, 3.0f, 4.0f});
  EXPECT_NEAR(nl::reservoir_cka(a, shuffled), direct, 1e-9);
  EXPECT_NEAR(nl::reservoir_cka(a, a), 1.0, 1e-9);

  auto disjoint = b;
  for (auto& id : disjoint.reservoir_ids) id += 1000;
  EXPECT_TRUE(std::isnan(nl::reservoir_cka(a, disjoint)));
  auto broken = b;
  broken.reservoir.pop_back();
  EXPECT_THROW(nl::reservoir_cka(a, broken), std::invalid_argument);
}

TEST(AnnotateLayer, FillsSkillsLossCorrelationAndDormantRates) {
  neuronmap::LayerSnapshot layer;
  layer.name = "fc1";
  layer.n_neurons = 5;
  layer.mean_abs = {1.0, 1.0, 1.0, 0.0, 0.01};
  layer.reservoir_tags = {0, 1, 0, 1, 0, 1, 7, -1};  // 7 has no name: untagged
  layer.reservoir_loss = {0.1f, 0.9f, 0.2f, 0.8f, 0.1f, 0.7f, 0.5f, nanf("")};
  neuronmap::Group selective, flat, no_pattern;
  selective.group_id = 0;
  selective.activation_pattern = {1.0f, 0.0f, 1.0f, 0.0f, 1.0f, 0.0f, 0.5f, 0.5f};
  flat.group_id = 1;
  flat.activation_pattern = {1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f};
  no_pattern.group_id = 2;
  layer.groups = {selective, flat, no_pattern};

  nl::annotate_layer(layer, {"mathematical", "linguistic"}, {});
  EXPECT_EQ(layer.groups[0].skill_category, "mathematical");
  EXPECT_NEAR(layer.groups[0].selectivity, 1.0, 1e-12);
  EXPECT_LT(layer.groups[0].loss_correlation, -0.9);  // answers where the loss is low
  EXPECT_EQ(layer.groups[1].skill_category, "mixed");
  EXPECT_EQ(layer.groups[1].loss_correlation, 0.0);
  EXPECT_EQ(layer.groups[2].skill_category, "untagged");
  // Layer mean E|h| = 3.01 / 5: one dead neuron, and 0.01 / 0.602 = 0.017 is 0.025-dormant.
  EXPECT_NEAR(layer.dead_rate, 0.2, 1e-12);
  EXPECT_NEAR(layer.dormant_rate, 0.4, 1e-12);

  // Without mean_abs the moments stand in (non-negative neurons: E|h| = mean).
  neuronmap::LayerSnapshot relu;
  relu.n_neurons = 4;
  relu.mean = {1.0, 0.0, 1.0, 2.0};
  relu.min = {0.0, 0.0, 0.0, 0.0};
  relu.max = {3.0, 0.0, 3.0, 4.0};
  relu.stddev = {1.0, 0.0, 1.0, 1.0};
  nl::annotate_layer(relu, {}, {});
  EXPECT_NEAR(relu.dead_rate, 0.25, 1e-12);
}

TEST(SnapshotAnnotation, PhaseEventsAndLineagesOnSnapshots) {
  auto group = [](int id, std::int32_t first, std::int32_t last, double cohesion) {
    neuronmap::Group g;
    g.group_id = id;
    g.neuron_indices.resize(static_cast<std::size_t>(last - first + 1));
    std::iota(g.neuron_indices.begin(), g.neuron_indices.end(), first);
    g.cohesion_score = cohesion;
    g.skill_category = "untagged";
    return g;
  };
  neuronmap::Snapshot s0, s1;
  s0.epoch = 5;
  s0.loss = 1.0;
  s0.layers.resize(2);
  s0.layers[0].groups = {group(0, 0, 9, 0.5)};
  s1.epoch = 10;
  s1.loss = 0.9999;
  s1.layers.resize(2);
  s1.layers[0].groups = {group(0, 0, 9, 0.9), group(1, 20, 25, 0.6)};
  s1.layers[0].cka_previous = 0.999;
  s1.layers[1].cka_previous = 0.97;

  EXPECT_DOUBLE_EQ(nl::min_layer_cka(s1), 0.97);
  EXPECT_TRUE(std::isnan(nl::min_layer_cka(s0)));
  EXPECT_EQ(nl::snapshot_phase(s0, s1, {}), nl::LearningPhase::refinement);  // flat loss, but one layer moves
  s1.layers[1].cka_previous = 0.99;
  EXPECT_EQ(nl::snapshot_phase(s0, s1, {}), nl::LearningPhase::plateau);

  nl::LayerLearning fc1("fc1");
  fc1.update(s0.epoch, s0.loss, s0.layers[0]);
  EXPECT_EQ(s0.layers[0].groups[0].lineage_id, 0);
  const auto step = fc1.update(s1.epoch, s1.loss, s1.layers[0]);
  EXPECT_EQ(s1.layers[0].groups[0].lineage_id, 0);
  EXPECT_EQ(s1.layers[0].groups[1].lineage_id, 1);
  ASSERT_EQ(step.events.size(), 2u);  // group 1 emerged, lineage 0's cohesion jumped by 0.4
  const neuronmap::Event e = nl::to_event(step.events[1]);
  EXPECT_EQ(e.kind, "cohesion_jump");
  EXPECT_EQ(e.layer, "fc1");
  EXPECT_EQ(e.epoch, 10);
  EXPECT_EQ(e.lineages, (std::vector<std::int64_t>{0}));
  EXPECT_NEAR(e.strength, 0.8, 1e-12);
  EXPECT_NEAR(e.loss_change, -0.0001, 1e-12);
  EXPECT_EQ(e.skill_category, "untagged");
  EXPECT_EQ(nl::to_event(nl::LearningEvent{}).kind, "emerged");
  EXPECT_TRUE(std::isnan(nl::to_event(nl::LearningEvent{}).loss_change));
  (void)nan_value;
}
