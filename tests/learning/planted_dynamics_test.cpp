// Learning patterns end to end on planted dynamics with a known answer: a model
// whose probed layer's weights the test sets per epoch, driven through the public API (attach,
// observe, set_reference, end_epoch), then read back from the run file with neuronmap::Run.
//
// Inputs (20 columns per sample, tag = sample's task family):
//   0: z0 ~ N(0,1)   1: z1 ~ N(0,1)   2: z2 = [tag == logical] (1.5 + 0.5 N(0,1))   3: the tag id
//   4..19: e_0..e_15 ~ N(0,1), one private noise column per neuron of "planted"
// "planted" (Linear 20 -> 16, no bias): neuron i = 0.3 e_i + its factor. Neurons that share a factor
// correlate at ~0.92 (threshold 0.6), neurons without one at ~0, so the groups are the factors:
//   epoch 1: C = {8,9,10} <- z2 (answers only to "logical")
//   epoch 2: A = {0..6} <- z0 emerges
//   epoch 3: A splits into A1 = {0..3} <- z0 and A2 = {4,5,6} <- z1
//   epoch 4: A2 dissolves (back to noise); neurons 13..15 go silent (all-zero weights)
//   epoch 5, 6: nothing changes (the representation stops changing)
// "stable" (Linear 20 -> 4, fixed): the tag id, z2, e_0, e_1: no groups, never changes.
// Losses given to end_epoch: 2.0, 1.6, 1.3, 1.3, 1.3, 1.4 -> phases rapid, rapid, refinement, plateau,
// unstable. The per-sample loss is 1 + z2, so C's activation follows the loss.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "neuronmap/neuronmap.hpp"

namespace nm = neuronmap;
namespace fs = std::filesystem;

namespace {

constexpr int kInputs = 20;
constexpr int kNeurons = 16;
constexpr int kEpochs = 6;
constexpr std::int64_t kBatch = 64;
constexpr int kBatches = 8;
const std::vector<std::string> kTags = {"mathematical", "linguistic", "logical", "memory"};
constexpr int kLogical = 2;
const double kLosses[kEpochs] = {2.0, 1.6, 1.3, 1.3, 1.3, 1.4};

struct PlantedImpl : torch::nn::Module {
  PlantedImpl()
      : planted(register_module("planted", torch::nn::Linear(torch::nn::LinearOptions(kInputs, kNeurons).bias(false)))),
        stable(register_module("stable", torch::nn::Linear(torch::nn::LinearOptions(kInputs, 4).bias(false)))) {}
  torch::Tensor forward(const torch::Tensor& x) { return torch::cat({planted(x), stable(x)}, 1); }
  torch::nn::Linear planted, stable;
};
TORCH_MODULE(Planted);

// The planted layer's weights at `epoch` (1-based), as described at the top.
torch::Tensor planted_weights(int epoch) {
  auto w = torch::zeros({kNeurons, kInputs});
  for (int i = 0; i < kNeurons; ++i) {
    if (epoch >= 4 && i >= 13) continue;  // silent from epoch 4 on
    w[i][4 + i] = 0.3;
  }
  for (int i = 8; i <= 10; ++i) w[i][2] = 1.0;  // C <- z2
  if (epoch == 2) {
    for (int i = 0; i <= 6; ++i) w[i][0] = 1.0;  // A <- z0
  } else if (epoch >= 3) {
    for (int i = 0; i <= 3; ++i) w[i][0] = 1.0;           // A1 <- z0
    if (epoch == 3) for (int i = 4; i <= 6; ++i) w[i][1] = 1.0;  // A2 <- z1, gone from epoch 4
  }
  return w;
}

torch::Tensor stable_weights() {
  auto w = torch::zeros({4, kInputs});
  w[0][3] = 1.0;  // the tag id
  w[1][2] = 1.0;  // z2
  w[2][4] = 1.0;  // e_0
  w[3][5] = 1.0;  // e_1
  return w;
}

struct Batch {
  torch::Tensor x;                 // [B, kInputs]
  std::vector<std::int32_t> tags;  // per sample
  torch::Tensor loss;              // [B], 1 + z2
};

Batch make_batch(std::int64_t n, std::int64_t offset) {
  Batch b;
  b.x = torch::zeros({n, kInputs});
  auto tag = (torch::arange(n, torch::kLong) + offset).remainder(4);
  b.x.select(1, 0).copy_(torch::randn({n}));
  b.x.select(1, 1).copy_(torch::randn({n}));
  b.x.select(1, 2).copy_((tag == kLogical).to(torch::kFloat) * (1.5 + 0.5 * torch::randn({n})));
  b.x.select(1, 3).copy_(tag.to(torch::kFloat));
  b.x.slice(1, 4, kInputs).copy_(torch::randn({n, kNeurons}));
  b.loss = 1.0 + b.x.select(1, 2);
  for (std::int64_t k = 0; k < n; ++k) b.tags.push_back(static_cast<std::int32_t>(tag[k].item<std::int64_t>()));
  return b;
}

// Linear CKA computed directly (Kornblith et al. 2019), float64: ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)
// on column-centred X, Y.
double direct_cka(torch::Tensor x, torch::Tensor y) {
  x = x.to(torch::kDouble);
  y = y.to(torch::kDouble);
  x = x - x.mean(0, true);
  y = y - y.mean(0, true);
  const double cross = y.t().mm(x).pow(2).sum().item<double>();
  return cross / (x.t().mm(x).norm().item<double>() * y.t().mm(y).norm().item<double>());
}

// Selectivity index from the stored pattern and tags, as docs/LEARNING.md states it: shift a signed
// pattern by its smallest tagged sample, SI = (mu_max - mu_rest) / (mu_max + mu_rest).
double direct_selectivity(const std::vector<float>& pattern, const std::vector<std::int32_t>& tags, int* top) {
  std::map<int, std::pair<double, int>> sums;
  double lowest = 0.0;
  for (std::size_t k = 0; k < pattern.size(); ++k) {
    if (tags[k] < 0) continue;
    sums[tags[k]].first += pattern[k];
    sums[tags[k]].second += 1;
    lowest = std::min(lowest, static_cast<double>(pattern[k]));
  }
  std::map<int, double> means;
  for (const auto& [t, s] : sums) means[t] = s.first / s.second - lowest;
  *top = means.begin()->first;
  for (const auto& [t, m] : means) {
    if (m > means[*top]) *top = t;
  }
  double rest = 0.0;
  for (const auto& [t, m] : means) rest += t == *top ? 0.0 : m;
  rest /= static_cast<double>(means.size() - 1);
  return (means[*top] - rest) / (means[*top] + rest);
}

const nm::LayerSnapshot& layer_named(const nm::Snapshot& s, const std::string& name) {
  for (const auto& l : s.layers) {
    if (l.name == name) return l;
  }
  throw std::runtime_error("no layer " + name);
}

std::set<std::vector<std::int32_t>> member_sets(const nm::LayerSnapshot& layer) {
  std::set<std::vector<std::int32_t>> out;
  for (const auto& g : layer.groups) out.insert(g.neuron_indices);
  return out;
}

const nm::Group* group_with(const nm::LayerSnapshot& layer, std::vector<std::int32_t> members) {
  for (const auto& g : layer.groups) {
    if (g.neuron_indices == members) return &g;
  }
  return nullptr;
}

std::vector<std::int32_t> range(int first, int last) {
  std::vector<std::int32_t> v;
  for (int i = first; i <= last; ++i) v.push_back(i);
  return v;
}

}  // namespace

TEST(PlantedDynamics, EventsCategoriesPhasesAndCkaMatchTheKnownAnswer) {
  torch::manual_seed(7);
  const auto dir = fs::temp_directory_path() / "neuronmap_learning_tests";
  fs::create_directories(dir);
  const auto path = (dir / "planted.h5").string();

  Planted model;
  torch::NoGradGuard no_grad;
  model->stable->weight.copy_(stable_weights());
  const Batch reference = make_batch(128, 1);
  std::vector<torch::Tensor> reference_planted;  // the planted layer's output on the reference, per epoch

  auto session = nm::attach(*model, {"planted", "stable"}, nm::Options{}.every(1).file(path).overwrite(true).tag_names(kTags));
  session.set_reference([&] { model->forward(reference.x); });
  for (int epoch = 1; epoch <= kEpochs; ++epoch) {
    const auto w = planted_weights(epoch);
    model->planted->weight.copy_(w);
    reference_planted.push_back(reference.x.to(torch::kDouble).mm(w.to(torch::kDouble).t()));
    ASSERT_TRUE(session.capturing());
    for (int b = 0; b < kBatches; ++b) {
      const Batch batch = make_batch(kBatch, b);
      model->forward(batch.x);
      session.observe(batch.loss, batch.tags);
    }
    session.end_epoch(epoch, kLosses[epoch - 1]);
  }
  session.close();
  ASSERT_EQ(session.last_error(), "");

  auto run = nm::Run::open(path);
  ASSERT_EQ(run.size(), kEpochs);
  EXPECT_EQ(run.info().tag_names, kTags);
  std::vector<nm::Snapshot> snaps;
  for (int s = 0; s < kEpochs; ++s) snaps.push_back(run.snapshot(s));

  // Groups per snapshot: exactly the planted factors.
  const auto A = range(0, 6), A1 = range(0, 3), A2 = range(4, 6), C = range(8, 10);
  const std::vector<std::set<std::vector<std::int32_t>>> expected_groups = {
      {C}, {A, C}, {A1, A2, C}, {A1, C}, {A1, C}, {A1, C}};
  for (int s = 0; s < kEpochs; ++s) {
    SCOPED_TRACE("epoch " + std::to_string(s + 1));
    EXPECT_EQ(snaps[s].epoch, s + 1);
    EXPECT_EQ(snaps[s].loss, kLosses[s]);
    EXPECT_EQ(member_sets(layer_named(snaps[s], "planted")), expected_groups[s]);
    EXPECT_TRUE(layer_named(snaps[s], "stable").groups.empty());
  }

  // Lineages: C keeps one lineage throughout; A1 continues A; A2 is a new lineage.
  auto lineage = [&](int s, const std::vector<std::int32_t>& members) {
    const auto* g = group_with(layer_named(snaps[s], "planted"), members);
    return g ? g->lineage_id : -2;
  };
  const auto lineage_c = lineage(0, C), lineage_a = lineage(1, A), lineage_a2 = lineage(2, A2);
  EXPECT_GE(lineage_c, 0);
  for (int s = 1; s < kEpochs; ++s) EXPECT_EQ(lineage(s, C), lineage_c) << "epoch " << s + 1;
  EXPECT_GE(lineage_a, 0);
  EXPECT_NE(lineage_a, lineage_c);
  for (int s = 2; s < kEpochs; ++s) EXPECT_EQ(lineage(s, A1), lineage_a) << "epoch " << s + 1;
  EXPECT_GE(lineage_a2, 0);
  EXPECT_NE(lineage_a2, lineage_a);
  EXPECT_NE(lineage_a2, lineage_c);

  // Events: exactly the planted ones, nothing at the baseline or once the weights stop changing.
  struct Expected {
    std::int64_t epoch;
    std::string kind;
    std::vector<std::int64_t> lineages;
    double strength;
    std::string skill;
  };
  const auto* a_at_2 = group_with(layer_named(snaps[1], "planted"), A);
  const auto* a2_at_3 = group_with(layer_named(snaps[2], "planted"), A2);
  ASSERT_TRUE(a_at_2 && a2_at_3);
  const std::vector<Expected> expected_events = {
      {2, "emerged", {lineage_a}, a_at_2->cohesion_score, "mixed"},  // strength: the new group's cohesion
      {3, "split", {lineage_a, lineage_a2}, 1.0, "mixed"},           // all of A's members are in the parts
      {4, "dissolved", {lineage_a2}, a2_at_3->cohesion_score, "mixed"},
      {4, "dormant_change", {}, (3.0 / 16.0) / 0.25, ""},            // 0 -> 3/16 dormant, scale 0.25
  };
  std::vector<nm::Event> events;
  for (const auto& s : snaps) {
    for (const auto& e : s.events) {
      EXPECT_EQ(e.epoch, s.epoch);
      events.push_back(e);
    }
  }
  ASSERT_EQ(events.size(), expected_events.size());
  for (std::size_t k = 0; k < events.size(); ++k) {
    const auto& e = events[k];
    const auto& x = expected_events[k];
    SCOPED_TRACE("event " + std::to_string(k) + ": " + e.kind);
    EXPECT_EQ(e.epoch, x.epoch);
    EXPECT_EQ(e.layer, "planted");
    EXPECT_EQ(e.kind, x.kind);
    EXPECT_EQ(e.lineages, x.lineages);
    EXPECT_NEAR(e.strength, x.strength, 1e-9);
    EXPECT_EQ(e.skill_category, x.skill);
    EXPECT_DOUBLE_EQ(e.loss_change, kLosses[x.epoch - 1] - kLosses[x.epoch - 2]);
  }

  // Dormant neurons: the three silenced neurons from epoch 4 on, none before; the stable layer has none.
  for (int s = 0; s < kEpochs; ++s) {
    const auto& planted = layer_named(snaps[s], "planted");
    const double expected = s + 1 >= 4 ? 3.0 / 16.0 : 0.0;
    EXPECT_DOUBLE_EQ(planted.dormant_rate, expected) << "epoch " << s + 1;
    EXPECT_DOUBLE_EQ(planted.dead_rate, expected) << "epoch " << s + 1;
    EXPECT_DOUBLE_EQ(layer_named(snaps[s], "stable").dormant_rate, 0.0);
  }

  // Skill categories: C answers only to "logical"; the z0/z1 groups to every family alike.
  for (int s = 0; s < kEpochs; ++s) {
    SCOPED_TRACE("epoch " + std::to_string(s + 1));
    const auto& planted = layer_named(snaps[s], "planted");
    for (const auto& g : planted.groups) {
      ASSERT_EQ(g.activation_pattern.size(), planted.reservoir_tags.size());
      int top = -1;
      const double si = direct_selectivity(g.activation_pattern, planted.reservoir_tags, &top);
      EXPECT_NEAR(g.selectivity, si, 1e-9);
      if (g.neuron_indices == C) {
        EXPECT_EQ(top, kLogical);
        EXPECT_GE(g.selectivity, 0.3);
        EXPECT_EQ(g.skill_category, "logical");
        EXPECT_GT(g.loss_correlation, 0.9);  // the per-sample loss is C's factor
      } else {
        EXPECT_LT(g.selectivity, 0.3);
        EXPECT_EQ(g.skill_category, "mixed");
        EXPECT_LT(std::abs(g.loss_correlation), 0.3);
      }
    }
    // Tags and losses reach the right reservoir rows: the stable layer's neurons 0 and 1 are the
    // sample's tag id and z2, and its per-sample loss was 1 + z2.
    const auto& stable = layer_named(snaps[s], "stable");
    ASSERT_EQ(stable.reservoir.size(), stable.reservoir_ids.size() * 4);
    ASSERT_EQ(stable.reservoir_tags.size(), stable.reservoir_ids.size());
    ASSERT_EQ(stable.reservoir_ids.size(), static_cast<std::size_t>(kBatch * kBatches));  // all rows kept
    for (std::size_t r = 0; r < stable.reservoir_ids.size(); ++r) {
      ASSERT_EQ(stable.reservoir_tags[r], static_cast<std::int32_t>(stable.reservoir[r * 4])) << "row " << r;
      ASSERT_FLOAT_EQ(stable.reservoir_loss[r], 1.0f + stable.reservoir[r * 4 + 1]) << "row " << r;
    }
  }

  // CKA between consecutive snapshots on the reference batch equals the direct computation; the
  // stable layer never changes (CKA 1) and the planted one stops changing after epoch 4.
  const torch::Tensor stable_reference = reference.x.to(torch::kDouble).mm(stable_weights().to(torch::kDouble).t());
  std::vector<double> cka(kEpochs, std::nan(""));
  for (int s = 0; s < kEpochs; ++s) {
    SCOPED_TRACE("epoch " + std::to_string(s + 1));
    const auto& planted = layer_named(snaps[s], "planted");
    const auto& stable = layer_named(snaps[s], "stable");
    if (s == 0) {
      EXPECT_TRUE(std::isnan(planted.cka_previous));
      EXPECT_TRUE(std::isnan(stable.cka_previous));
      continue;
    }
    cka[s] = direct_cka(reference_planted[s - 1], reference_planted[s]);
    EXPECT_NEAR(planted.cka_previous, cka[s], 1e-6);
    EXPECT_NEAR(stable.cka_previous, direct_cka(stable_reference, stable_reference), 1e-6);
    EXPECT_NEAR(stable.cka_previous, 1.0, 1e-9);
  }
  EXPECT_LT(cka[1], 0.98);  // A appears
  EXPECT_LT(cka[2], 0.98);  // A splits
  EXPECT_LT(cka[3], 0.98);  // A2 dissolves, three neurons fall silent
  EXPECT_NEAR(cka[4], 1.0, 1e-9);
  EXPECT_NEAR(cka[5], 1.0, 1e-9);
  // The epoch-4 interval is refinement only if its CKA did not drop by >= 0.2 from the interval before.
  ASSERT_LT(cka[2] - cka[3], 0.2);

  // CKA between the two layers within a snapshot, on the reservoir rows both hold.
  for (int s = 0; s < kEpochs; ++s) {
    const auto& a = snaps[s].layers[0];
    const auto& b = snaps[s].layers[1];
    ASSERT_EQ(snaps[s].layer_cka.size(), 4u);
    ASSERT_EQ(a.reservoir_ids, b.reservoir_ids);
    const auto n = static_cast<std::int64_t>(a.reservoir_ids.size());
    const auto x = torch::from_blob(const_cast<float*>(a.reservoir.data()), {n, a.n_neurons}, torch::kFloat);
    const auto y = torch::from_blob(const_cast<float*>(b.reservoir.data()), {n, b.n_neurons}, torch::kFloat);
    const double expected = direct_cka(x, y);
    EXPECT_NEAR(snaps[s].layer_cka[1], expected, 1e-6) << "epoch " << s + 1;
    EXPECT_NEAR(snaps[s].layer_cka[2], expected, 1e-6) << "epoch " << s + 1;
    EXPECT_EQ(snaps[s].layer_cka[0], 1.0);
    EXPECT_EQ(snaps[s].layer_cka[3], 1.0);
  }

  // Phases: rapid while the loss falls >= 2 %/epoch, refinement while flat but still moving, plateau when
  // flat and still, unstable when the loss rises; every group record carries its snapshot's phase.
  const std::vector<std::string> phases = {"", "rapid", "rapid", "refinement", "plateau", "unstable"};
  for (int s = 0; s < kEpochs; ++s) {
    EXPECT_EQ(snaps[s].phase, phases[s]) << "epoch " << s + 1;
    for (const auto& layer : snaps[s].layers) {
      for (const auto& g : layer.groups) EXPECT_EQ(g.learning_phase, s == 0 ? "unknown" : phases[s]) << "epoch " << s + 1;
    }
  }
}
