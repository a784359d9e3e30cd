// The snapshot builder on sealed windows filled by hand: statistics against a direct computation,
// groups, the observations attached to reservoir rows, and the learning history across two calls.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

#include "snapshot/builder.hpp"
#include "stream/reservoir.hpp"

namespace nm = neuronmap;
using nm::detail::build_snapshot;
using nm::detail::ForwardObservation;
using nm::detail::LayerAccumulator;
using nm::detail::LearningHistory;
using nm::detail::SealedWindow;
using nm::detail::split_sample_id;

namespace {

constexpr std::int64_t kNeurons = 6;
constexpr std::int64_t kRowsPerBatch = 50;
constexpr std::int64_t kBatches = 2;
constexpr std::int64_t kReservoir = 16;
constexpr std::uint64_t kSeed = 7;

// Two planted groups: neurons 0-2 follow one latent value, neurons 3-5 another.
std::vector<std::vector<float>> planted_batches(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<std::vector<float>> batches;
  for (std::int64_t b = 0; b < kBatches; ++b) {
    std::vector<float> rows;
    for (std::int64_t r = 0; r < kRowsPerBatch; ++r) {
      const double first = normal(rng), second = normal(rng);
      for (std::int64_t c = 0; c < kNeurons; ++c) {
        const double latent = c < 3 ? first : second;
        rows.push_back(static_cast<float>(1.0 + (1.0 + 0.5 * static_cast<double>(c)) * latent + 0.1 * normal(rng)));
      }
    }
    batches.push_back(std::move(rows));
  }
  return batches;
}

// Forward 0 has one sample per row; forward 1 has half as many samples as rows (two tokens each) and no loss.
std::vector<ForwardObservation> observations() {
  std::vector<ForwardObservation> forwards(2);
  for (std::int32_t s = 0; s < kRowsPerBatch; ++s) {
    forwards[0].tags.push_back(s % 3);
    forwards[0].loss.push_back(0.1f * static_cast<float>(s));
  }
  for (std::int32_t s = 0; s < kRowsPerBatch / 2; ++s) forwards[1].tags.push_back(2 - s % 3);
  return forwards;
}

SealedWindow sealed_window(const std::vector<std::vector<float>>& batches, std::int64_t epoch, double loss) {
  SealedWindow window;
  window.epoch = epoch;
  window.loss = loss;
  window.timestamp = 1234.5;
  window.loss_epochs = {epoch};
  window.losses = {loss};
  window.layers.resize(2);  // layer 1 captured nothing
  auto& layer = window.layers[0];
  for (std::int64_t b = 0; b < kBatches; ++b) {
    layer.add_batch(batches[static_cast<std::size_t>(b)].data(), kRowsPerBatch, kNeurons, b, b, kReservoir, kSeed);
  }
  layer.output_shape = {kRowsPerBatch, kNeurons};
  window.counters.resize(2);
  window.counters[0].captured_batches = kBatches;
  window.counters[0].rows = layer.rows;
  window.observations = observations();
  return window;
}

nm::Options options() { return nm::Options{}.reservoir_size(kReservoir).seed(kSeed).tag_names({"a", "b", "c"}); }

}  // namespace

TEST(SampleId, SplitInvertsSampleId) {
  for (const std::int64_t ordinal : {0LL, 1LL, 5LL, 123456LL, (1LL << 38) - 1}) {
    for (const std::int64_t row : {0LL, 1LL, 77LL, (1LL << 24) - 1}) {
      const auto parts = split_sample_id(nm::detail::sample_id(ordinal, row));
      EXPECT_EQ(parts.ordinal, ordinal);
      EXPECT_EQ(parts.row, row);
    }
  }
}

TEST(SnapshotBuilder, StatisticsAndGroupsEqualADirectComputation) {
  const auto batches = planted_batches(1);
  LearningHistory history({"fc1", "fc2"});
  const auto built = build_snapshot(sealed_window(batches, 5, 0.75), history, options());
  const auto& snapshot = built.snapshot;
  EXPECT_TRUE(built.problems.empty());
  EXPECT_EQ(snapshot.epoch, 5);
  EXPECT_EQ(snapshot.loss, 0.75);
  EXPECT_EQ(snapshot.timestamp, 1234.5);
  ASSERT_EQ(snapshot.layers.size(), 2U);
  const auto& layer = snapshot.layers[0];
  EXPECT_EQ(layer.name, "fc1");
  EXPECT_EQ(layer.counters.captured_batches, kBatches);
  EXPECT_EQ(layer.n_neurons, kNeurons);
  EXPECT_EQ(layer.samples, kBatches * kRowsPerBatch);
  EXPECT_EQ(snapshot.layers[1].name, "fc2");
  EXPECT_EQ(snapshot.layers[1].n_neurons, 0);

  // Every row, in float64, straight from the batches.
  std::vector<double> all;
  for (const auto& batch : batches) all.insert(all.end(), batch.begin(), batch.end());
  const auto n = static_cast<double>(kBatches * kRowsPerBatch);
  auto at = [&](std::size_t r, std::int64_t c) { return all[r * kNeurons + static_cast<std::size_t>(c)]; };
  const std::size_t rows = all.size() / kNeurons;
  std::vector<double> mean(kNeurons, 0.0), stddev(kNeurons, 0.0);
  for (std::int64_t c = 0; c < kNeurons; ++c) {
    const auto i = static_cast<std::size_t>(c);
    double lowest = at(0, c), highest = at(0, c), sum_abs = 0.0;
    for (std::size_t r = 0; r < rows; ++r) {
      mean[i] += at(r, c) / n;
      lowest = std::min(lowest, at(r, c));
      highest = std::max(highest, at(r, c));
      sum_abs += std::abs(at(r, c));
    }
    for (std::size_t r = 0; r < rows; ++r) stddev[i] += (at(r, c) - mean[i]) * (at(r, c) - mean[i]) / n;
    stddev[i] = std::sqrt(stddev[i]);
    EXPECT_NEAR(layer.mean[i], mean[i], 1e-9);
    EXPECT_NEAR(layer.stddev[i], stddev[i], 1e-9);
    EXPECT_EQ(layer.min[i], lowest);
    EXPECT_EQ(layer.max[i], highest);
    EXPECT_NEAR(layer.mean_abs[i], sum_abs / n, 1e-9);
  }
  ASSERT_EQ(layer.correlation.size(), static_cast<std::size_t>(kNeurons * kNeurons));
  for (std::int64_t a = 0; a < kNeurons; ++a) {
    for (std::int64_t b = 0; b < kNeurons; ++b) {
      double covariance = 0.0;
      for (std::size_t r = 0; r < rows; ++r) {
        covariance += (at(r, a) - mean[static_cast<std::size_t>(a)]) * (at(r, b) - mean[static_cast<std::size_t>(b)]) / n;
      }
      const double r = covariance / (stddev[static_cast<std::size_t>(a)] * stddev[static_cast<std::size_t>(b)]);
      EXPECT_NEAR(layer.correlation[static_cast<std::size_t>(a * kNeurons + b)], r, 1e-5) << a << "," << b;
    }
  }

  // The planted groups, with their members' mean and their reservoir rows' pattern.
  ASSERT_EQ(layer.groups.size(), 2U);
  EXPECT_EQ(layer.groups[0].neuron_indices, (std::vector<std::int32_t>{0, 1, 2}));
  EXPECT_EQ(layer.groups[1].neuron_indices, (std::vector<std::int32_t>{3, 4, 5}));
  EXPECT_EQ(layer.labels, (std::vector<std::int32_t>{0, 0, 0, 1, 1, 1}));
  for (const auto& group : layer.groups) {
    EXPECT_EQ(group.layer_name, "fc1");
    EXPECT_GT(group.cohesion_score, 0.9);
    EXPECT_FALSE(group.loose);
    double sum = 0.0;
    for (const auto i : group.neuron_indices) sum += mean[static_cast<std::size_t>(i)];
    EXPECT_NEAR(group.mean_activation, sum / 3.0, 1e-9);
    ASSERT_EQ(group.activation_pattern.size(), static_cast<std::size_t>(kReservoir));
  }

  // The reservoir: kReservoir rows in id order, each the captured row its id names.
  ASSERT_EQ(layer.reservoir_ids.size(), static_cast<std::size_t>(kReservoir));
  EXPECT_TRUE(std::is_sorted(layer.reservoir_ids.begin(), layer.reservoir_ids.end()));
  for (std::size_t k = 0; k < layer.reservoir_ids.size(); ++k) {
    const auto id = split_sample_id(layer.reservoir_ids[k]);
    const auto& batch = batches[static_cast<std::size_t>(id.ordinal)];
    for (std::int64_t c = 0; c < kNeurons; ++c) {
      EXPECT_EQ(layer.reservoir[k * kNeurons + static_cast<std::size_t>(c)],
                batch[static_cast<std::size_t>(id.row * kNeurons + c)]);
    }
    float pattern = 0.0f;
    for (std::int64_t c = 0; c < 3; ++c) pattern += batch[static_cast<std::size_t>(id.row * kNeurons + c)];
    EXPECT_NEAR(layer.groups[0].activation_pattern[k], pattern / 3.0f, 1e-5);
  }
}

TEST(SnapshotBuilder, ReservoirRowsGetTheirSamplesTagAndLoss) {
  LearningHistory history({"fc1", "fc2"});
  const auto snapshot = build_snapshot(sealed_window(planted_batches(2), 5, 1.0), history, options()).snapshot;
  const auto& layer = snapshot.layers[0];
  ASSERT_EQ(layer.reservoir_tags.size(), layer.reservoir_ids.size());
  ASSERT_EQ(layer.reservoir_loss.size(), layer.reservoir_ids.size());
  bool saw_first = false, saw_second = false;
  for (std::size_t k = 0; k < layer.reservoir_ids.size(); ++k) {
    const auto id = split_sample_id(layer.reservoir_ids[k]);
    if (id.ordinal == 0) {  // one sample per row
      saw_first = true;
      EXPECT_EQ(layer.reservoir_tags[k], id.row % 3);
      EXPECT_FLOAT_EQ(layer.reservoir_loss[k], 0.1f * static_cast<float>(id.row));
    } else {  // two rows per sample, no loss
      saw_second = true;
      EXPECT_EQ(layer.reservoir_tags[k], 2 - (id.row / 2) % 3);
      EXPECT_TRUE(std::isnan(layer.reservoir_loss[k]));
    }
  }
  EXPECT_TRUE(saw_first && saw_second);
  EXPECT_TRUE(snapshot.layers[1].reservoir_tags.empty());
}

TEST(SnapshotBuilder, ObservationsLookedUpBeforehandAreAttachedAsGiven) {
  // A distributed window: no forward passes here, each rank looked its rows up before sending them.
  auto window = sealed_window(planted_batches(3), 5, 1.0);
  window.observations.clear();
  window.observed.resize(2);
  const auto ids = window.layers[0].reservoir.sorted_rows().second;
  for (std::size_t k = 0; k < ids.size(); k += 2) window.observed[0][ids[k]] = {static_cast<std::int32_t>(k % 3), 2.5f};
  LearningHistory history({"fc1", "fc2"});
  const auto built = build_snapshot(std::move(window), history, options());
  const auto& layer = built.snapshot.layers[0];
  for (std::size_t k = 0; k < ids.size(); ++k) {
    EXPECT_EQ(layer.reservoir_tags[k], k % 2 == 0 ? static_cast<std::int32_t>(k % 3) : -1);
    EXPECT_EQ(std::isnan(layer.reservoir_loss[k]), k % 2 != 0);
  }
}

TEST(SnapshotBuilder, LearningHistoryAdvancesAcrossCalls) {
  LearningHistory history({"fc1", "fc2"});
  const auto batches = planted_batches(4);
  const auto first = build_snapshot(sealed_window(batches, 5, 1.0), history, options()).snapshot;
  ASSERT_TRUE(history.previous.has_value());
  EXPECT_EQ(history.previous->epoch, 5);
  EXPECT_TRUE(first.phase.empty());  // the baseline has no interval behind it
  EXPECT_TRUE(first.events.empty());
  ASSERT_EQ(first.layers[0].groups.size(), 2U);
  EXPECT_EQ(first.layers[0].groups[0].lineage_id, 0);
  EXPECT_EQ(first.layers[0].groups[1].lineage_id, 1);
  for (const auto& group : first.layers[0].groups) {
    EXPECT_EQ(group.learning_phase, "unknown");
    EXPECT_NE(group.skill_category, "");
  }
  EXPECT_GE(first.layers[0].dormant_rate, 0.0);
  ASSERT_EQ(first.layer_cka.size(), 4U);
  EXPECT_EQ(first.layer_cka[0], 1.0);

  // The same groups five epochs later: the lineages continue, the interval has a phase.
  const auto second = build_snapshot(sealed_window(planted_batches(5), 10, 0.5), history, options()).snapshot;
  EXPECT_EQ(history.previous->epoch, 10);
  EXPECT_EQ(history.previous->loss, 0.5);
  EXPECT_FALSE(second.phase.empty());
  ASSERT_EQ(second.layers[0].groups.size(), 2U);
  EXPECT_EQ(second.layers[0].groups[0].lineage_id, 0);
  EXPECT_EQ(second.layers[0].groups[1].lineage_id, 1);
  for (const auto& group : second.layers[0].groups) EXPECT_EQ(group.learning_phase, second.phase);
  for (const auto& event : second.events) {
    EXPECT_NE(event.kind, "emerged");
    EXPECT_NEAR(event.loss_change, -0.5, 1e-12);
  }
}

TEST(SnapshotBuilder, TemporalCkaComparesReferenceRowsOfConsecutiveSnapshots) {
  LearningHistory history({"fc1", "fc2"});
  const auto batches = planted_batches(6);
  auto window = sealed_window(batches, 5, 1.0);
  window.reference.resize(2);
  window.reference[0] = {kNeurons, std::vector<float>(batches[0].begin(), batches[0].begin() + 10 * kNeurons)};
  const auto first = build_snapshot(std::move(window), history, options()).snapshot;
  EXPECT_TRUE(std::isnan(first.layers[0].cka_previous));
  EXPECT_EQ(first.layers[0].reference_rows, 10);

  window = sealed_window(batches, 10, 0.9);
  window.reference.resize(2);
  window.reference[0] = {kNeurons, std::vector<float>(batches[0].begin(), batches[0].begin() + 10 * kNeurons)};
  const auto second = build_snapshot(std::move(window), history, options()).snapshot;
  EXPECT_NEAR(second.layers[0].cka_previous, 1.0, 1e-9);  // the same representation twice
}

TEST(SnapshotBuilder, AWindowOfAnotherLayerCountIsRefused) {
  LearningHistory history({"fc1", "fc2", "fc3"});
  EXPECT_THROW(build_snapshot(sealed_window(planted_batches(7), 5, 1.0), history, options()), std::invalid_argument);
  EXPECT_FALSE(history.previous.has_value());
}
