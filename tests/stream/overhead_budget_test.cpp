// Options::overhead_budget: with a deliberately slow worker the training loop's slowdown stays within
// the budget, and the statistics equal a direct computation over exactly the batches captured.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>
#include <set>
#include <utility>

#include "neuronmap/errors.hpp"
#include "neuronmap/run.hpp"
#include "neuronmap/version.hpp"
#include "stream/engine.hpp"
#include "stream/reservoir.hpp"
#include "test_dir.hpp"

namespace nm = neuronmap;
using nm::detail::Engine;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::int64_t kRows = 32, kCols = 16, kSteps = 300;
constexpr double kStepSeconds = 0.002;

std::unique_ptr<Engine> make_engine(const std::string& path, nm::Options options) {
  std::vector<nm::LayerInfo> infos = {{"a", "test", "rows as is"}, {"b", "test", "rows as is"}};
  nm::RunInfo info;
  info.format_version = nm::kFormatVersion;
  info.library_version = "test";
  info.layers = infos;
  return std::make_unique<Engine>(infos, options.file(path).overwrite(true), info, Engine::Hooks{});
}

// The rows of forward pass `step`, layer `layer`: distinct per pass, correlated columns.
const std::vector<float>& rows_of(std::int64_t step, int layer) {
  static std::vector<std::vector<float>> cache = [] {
    std::vector<std::vector<float>> out;
    std::mt19937_64 rng(11);
    std::normal_distribution<double> normal;
    for (std::int64_t i = 0; i < 2 * kSteps; ++i) {
      std::vector<float> rows(static_cast<std::size_t>(kRows * kCols));
      for (std::int64_t r = 0; r < kRows; ++r) {
        const double z = normal(rng);
        for (std::int64_t c = 0; c < kCols; ++c)
          rows[static_cast<std::size_t>(r * kCols + c)] = static_cast<float>((c % 2 == 0 ? z : 0.0) + normal(rng) + 3.0);
      }
      out.push_back(std::move(rows));
    }
    return out;
  }();
  return cache[static_cast<std::size_t>(2 * step + layer)];
}

// One training step: kStepSeconds of work on this thread, and a forward pass probing both layers.
void step(Engine* engine, std::int64_t index) {
  const auto until = Clock::now() + std::chrono::duration<double>(kStepSeconds);
  while (Clock::now() < until) {
  }
  if (engine == nullptr) return;
  for (int layer = 0; layer < 2; ++layer) {
    auto ticket = engine->begin_batch(layer);
    if (!ticket) continue;
    const auto& rows = rows_of(index, layer);
    std::copy(rows.begin(), rows.end(), ticket.reserve_values(kRows, kCols));
    engine->submit(std::move(ticket));
  }
}

// Plain and budgeted steps alternating one by one, so that the machine's noise (other processes,
// frequency changes) hits both alike; returns {plain seconds, budgeted seconds}.
std::pair<double, double> interleaved_seconds(Engine& engine) {
  double plain = 0, budgeted = 0;
  for (std::int64_t i = 0; i < kSteps; ++i) {
    auto start = Clock::now();
    step(nullptr, 0);
    plain += std::chrono::duration<double>(Clock::now() - start).count();
    start = Clock::now();
    step(&engine, i);
    budgeted += std::chrono::duration<double>(Clock::now() - start).count();
  }
  return {plain, budgeted};
}

}  // namespace

TEST(OverheadBudget, HoldsWithASlowWorkerAndStatisticsStayExactOverTheCapturedBatches) {
  const auto dir = std::filesystem::path(nm::test::fresh_test_dir("stream"));
  // A worker that needs 4x a step for each forward pass (two layers, 2 steps each): unbudgeted, the
  // queue fills and every step waits for it (~4x); within the budget about one pass in 40 is captured.
  // The wall-clock comparison is repeated on a fresh session (up to 5 times) when other processes
  // (a parallel test run) stole this machine's cores during one: the budget must hold in one of them.
  std::unique_ptr<Engine> engine;
  std::string tries;
  bool held = false;
  for (int attempt = 0; attempt < 5 && !held; ++attempt) {
    engine = make_engine((dir / ("budget" + std::to_string(attempt) + ".h5")).string(),
                         nm::Options{}.every(1).overhead_budget(0.05).reservoir_size(1 << 20));
    engine->set_worker_delay(2 * kStepSeconds);
    ASSERT_TRUE(engine->capturing());
    const auto [plain, budgeted] = interleaved_seconds(*engine);
    const double slowdown = budgeted / plain - 1.0;
    tries += " " + std::to_string(slowdown);
    held = slowdown <= 0.05 + 0.02;
    if (!held) engine->close();
  }
  RecordProperty("slowdowns", tries);
  ASSERT_TRUE(held) << "slowdown over " << kSteps << " steps, per try:" << tries;
  const auto path = engine->options().file();

  engine->set_worker_delay(0);
  engine->end_epoch(1, 1.0);
  engine->flush();
  engine->close();
  EXPECT_EQ(engine->last_error(), "");

  const auto run = nm::Run::open(path);
  ASSERT_EQ(run.size(), 1);
  const auto snapshot = run.snapshot(0);
  std::set<std::int64_t> captured_by_layer[2];
  for (int layer = 0; layer < 2; ++layer) {
    const auto& l = snapshot.layers.at(static_cast<std::size_t>(layer));
    EXPECT_EQ(l.counters.captured_batches, kSteps);
    EXPECT_GT(l.counters.budget_skipped_batches, 0);
    for (auto id : l.reservoir_ids) captured_by_layer[layer].insert(nm::detail::split_sample_id(id).ordinal);
    EXPECT_EQ(static_cast<std::int64_t>(captured_by_layer[layer].size()) + l.counters.budget_skipped_batches, kSteps);
    EXPECT_EQ(l.counters.rows, static_cast<std::int64_t>(captured_by_layer[layer].size()) * kRows);
  }
  // Both layers of a forward pass get the same decision.
  EXPECT_EQ(captured_by_layer[0], captured_by_layer[1]);
  ASSERT_GE(captured_by_layer[0].size(), 2u);

  // Mean, standard deviation and correlation over exactly the captured batches.
  for (int layer = 0; layer < 2; ++layer) {
    std::vector<double> mean(kCols, 0.0), m2(kCols * kCols, 0.0);
    std::int64_t n = 0;
    for (auto ordinal : captured_by_layer[layer]) {
      const auto& rows = rows_of(ordinal, layer);
      for (std::int64_t r = 0; r < kRows; ++r, ++n)
        for (std::int64_t c = 0; c < kCols; ++c) mean[c] += rows[r * kCols + c];
    }
    for (auto& m : mean) m /= static_cast<double>(n);
    for (auto ordinal : captured_by_layer[layer]) {
      const auto& rows = rows_of(ordinal, layer);
      for (std::int64_t r = 0; r < kRows; ++r)
        for (std::int64_t i = 0; i < kCols; ++i)
          for (std::int64_t j = 0; j < kCols; ++j)
            m2[i * kCols + j] += (rows[r * kCols + i] - mean[i]) * (rows[r * kCols + j] - mean[j]);
    }
    const auto& l = snapshot.layers.at(static_cast<std::size_t>(layer));
    ASSERT_EQ(l.samples, n);
    for (std::int64_t i = 0; i < kCols; ++i) {
      EXPECT_NEAR(l.mean[i], mean[i], 1e-9 * std::abs(mean[i]));
      const double sd = std::sqrt(m2[i * kCols + i] / static_cast<double>(n));
      EXPECT_NEAR(l.stddev[i], sd, 1e-9 * sd);
      for (std::int64_t j = 0; j < kCols; ++j)
        EXPECT_NEAR(l.correlation[i * kCols + j], m2[i * kCols + j] / std::sqrt(m2[i * kCols + i] * m2[j * kCols + j]),
                    1e-6);
    }
  }
}

// A cost the budget's timers cannot see: a step during which a worker finished a batch takes
// kStallSeconds longer, twenty times that worker's own time (as a training matmul does when a worker's
// product preempted one of its spinning BLAS threads). Estimated from the probe's and the workers'
// times alone, the stride would be 3 and the slowdown ~65%; measured directly, it holds the budget.
TEST(OverheadBudget, HoldsWhenTheWorkersSlowTheTrainingBeyondTheirOwnTime) {
  constexpr std::int64_t kLongSteps = 1000;
  constexpr double kWorkerSeconds = 0.0001, kStallSeconds = 0.004;
  const auto dir = std::filesystem::path(nm::test::fresh_test_dir("stream"));
  auto spin = [](double seconds) {
    const auto until = Clock::now() + std::chrono::duration<double>(seconds);
    while (Clock::now() < until) {
    }
  };
  std::string tries;
  bool held = false;
  for (int attempt = 0; attempt < 5 && !held; ++attempt) {
    auto engine = make_engine((dir / ("stall" + std::to_string(attempt) + ".h5")).string(),
                              nm::Options{}.every(1).overhead_budget(0.05));
    engine->set_worker_delay(kWorkerSeconds);
    // Blocks of plain and budgeted steps: the controller times the gaps between forward passes, so
    // a plain step between every two would double the step it sees (a block's gap is a pause to it).
    constexpr std::int64_t kBlock = 25;
    std::int64_t rows_seen = 0;
    double plain = 0, budgeted = 0;
    for (std::int64_t i = 0; i < kLongSteps; i += kBlock) {
      auto start = Clock::now();
      for (std::int64_t j = 0; j < kBlock; ++j) spin(kStepSeconds);
      plain += std::chrono::duration<double>(Clock::now() - start).count();
      start = Clock::now();
      for (std::int64_t j = i; j < i + kBlock; ++j) {
        spin(kStepSeconds);
        const auto rows = engine->counters().rows;
        if (rows != rows_seen) spin(kStallSeconds);
        rows_seen = rows;
        for (int layer = 0; layer < 2; ++layer) {
          auto ticket = engine->begin_batch(layer);
          if (!ticket) continue;
          const auto& values = rows_of(j % kSteps, layer);
          std::copy(values.begin(), values.end(), ticket.reserve_values(kRows, kCols));
          engine->submit(std::move(ticket));
        }
      }
      budgeted += std::chrono::duration<double>(Clock::now() - start).count();
    }
    const double slowdown = budgeted / plain - 1.0;
    const auto c = engine->counters();
    tries += " " + std::to_string(slowdown) + " (" + std::to_string(c.budget_skipped_batches / 2) + " of " +
             std::to_string(kLongSteps) + " passes left out)";
    held = slowdown <= 0.05 + 0.02;
    EXPECT_GT(c.budget_skipped_batches, 0);
    engine->close();
    EXPECT_EQ(engine->last_error(), "");
  }
  RecordProperty("slowdowns", tries);
  EXPECT_TRUE(held) << "slowdown over " << kLongSteps << " steps, per try:" << tries;
}

TEST(OverheadBudget, OffByDefaultCapturesEveryBatch) {
  const auto path = std::filesystem::path(nm::test::fresh_test_dir("stream")) / "off.h5";
  auto engine = make_engine(path.string(), nm::Options{}.every(1));
  for (std::int64_t i = 0; i < 20; ++i) step(engine.get(), i);
  engine->end_epoch(1, 1.0);
  engine->flush();
  const auto c = engine->counters();
  EXPECT_EQ(c.captured_batches, 40);
  EXPECT_EQ(c.budget_skipped_batches, 0);
  EXPECT_EQ(c.rows, 40 * kRows);
}

TEST(OverheadBudget, InvalidValuesAreRefused) {
  EXPECT_THROW(nm::Options{}.overhead_budget(-0.1).validate(), nm::UsageError);
  EXPECT_THROW(nm::Options{}.overhead_budget(std::nan("")).validate(), nm::UsageError);
  EXPECT_NO_THROW(nm::Options{}.overhead_budget(0.05).validate());
}
