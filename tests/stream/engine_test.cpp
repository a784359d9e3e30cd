// The engine without LibTorch: batches in, snapshots out, checked against direct computations.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <thread>

#include <sched.h>

#include "neuronmap/errors.hpp"
#include "neuronmap/run.hpp"
#include "neuronmap/version.hpp"
#include "stream/engine.hpp"

namespace nm = neuronmap;
namespace fs = std::filesystem;
using nm::detail::Engine;

namespace {

std::string temp_path(const std::string& name) {
  const auto dir = fs::temp_directory_path() / "neuronmap_stream_tests";
  fs::create_directories(dir);
  const auto path = dir / (name + ".h5");
  fs::remove(path);
  return path.string();
}

std::unique_ptr<Engine> make_engine(const std::string& name, nm::Options options, int layers = 2) {
  std::vector<nm::LayerInfo> infos;
  for (int l = 0; l < layers; ++l) infos.push_back({"layer" + std::to_string(l), "test", "rows as is"});
  nm::RunInfo info;
  info.format_version = nm::kFormatVersion;
  info.library_version = "test";
  info.layers = infos;
  options.file(temp_path(name));
  return std::make_unique<Engine>(infos, options, info, Engine::Hooks{});
}

// Random rows with correlated columns: x = z * A + noise.
std::vector<float> random_rows(std::mt19937_64& rng, std::int64_t rows, std::int64_t cols, double offset) {
  std::normal_distribution<double> normal;
  std::vector<float> out(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    const double z = normal(rng);
    for (std::int64_t c = 0; c < cols; ++c) {
      out[static_cast<std::size_t>(r * cols + c)] =
          static_cast<float>(offset + (c % 3 == 0 ? z : 0.0) + 0.5 * normal(rng) + 0.01 * static_cast<double>(c));
    }
  }
  return out;
}

bool submit(Engine& engine, int layer, const std::vector<float>& rows, std::int64_t cols) {
  auto ticket = engine.begin_batch(layer);
  if (!ticket) return false;
  const auto n = static_cast<std::int64_t>(rows.size()) / cols;
  std::copy(rows.begin(), rows.end(), ticket.reserve_values(n, cols));
  engine.submit(std::move(ticket));
  return true;
}

void advance_to_capture(Engine& engine, int every) {
  for (int e = 1; e < every; ++e) engine.end_epoch(e, 1.0);
}

}  // namespace

TEST(Engine, StatisticsEqualADirectComputationOverEverySample) {
  auto engine = make_engine("exact", nm::Options{}.every(3).workers(2));
  advance_to_capture(*engine, 3);
  ASSERT_TRUE(engine->capturing());
  std::mt19937_64 rng(7);
  const std::int64_t cols = 12;
  std::vector<float> all;
  for (int b = 0; b < 40; ++b) {
    auto rows = random_rows(rng, 1 + b % 17, cols, 1000.0);  // a large offset stresses the centring
    all.insert(all.end(), rows.begin(), rows.end());
    ASSERT_TRUE(submit(*engine, 0, rows, cols));
  }
  engine->end_epoch(3, 0.5);
  engine->flush();
  EXPECT_EQ(engine->snapshots_written(), 1);
  engine->close();
  EXPECT_EQ(engine->last_error(), "");

  const auto n = static_cast<std::int64_t>(all.size()) / cols;
  std::vector<double> mean(cols, 0.0), m2(cols * cols, 0.0);
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t c = 0; c < cols; ++c) mean[c] += all[r * cols + c];
  for (auto& m : mean) m /= static_cast<double>(n);
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t i = 0; i < cols; ++i)
      for (std::int64_t j = 0; j < cols; ++j)
        m2[i * cols + j] += (all[r * cols + i] - mean[i]) * (all[r * cols + j] - mean[j]);

  auto run = nm::Run::open(engine->options().file());
  ASSERT_EQ(run.size(), 1);
  const auto snapshot = run.snapshot(0);
  EXPECT_EQ(snapshot.epoch, 3);
  EXPECT_DOUBLE_EQ(snapshot.loss, 0.5);
  const auto& layer = snapshot.layers.at(0);
  ASSERT_EQ(layer.n_neurons, cols);
  EXPECT_EQ(layer.samples, n);
  EXPECT_EQ(layer.counters.rows, n);
  EXPECT_EQ(layer.counters.captured_batches, 40);
  for (std::int64_t i = 0; i < cols; ++i) {
    EXPECT_NEAR(layer.mean[i], mean[i], 1e-9 * std::abs(mean[i]));
    const double sd = std::sqrt(m2[i * cols + i] / static_cast<double>(n));
    EXPECT_NEAR(layer.stddev[i], sd, 1e-9 * sd);
    for (std::int64_t j = 0; j < cols; ++j) {
      const double r = m2[i * cols + j] / std::sqrt(m2[i * cols + i] * m2[j * cols + j]);
      EXPECT_NEAR(layer.correlation[i * cols + j], r, 1e-6);
    }
  }
  // Layer 1 never fired: present, with no neurons and no groups.
  EXPECT_EQ(snapshot.layers.at(1).n_neurons, 0);
  EXPECT_TRUE(snapshot.layers.at(1).groups.empty());
}

TEST(Engine, CapturesOnlyInSnapshotEpochs) {
  auto engine = make_engine("epochs", nm::Options{}.every(2));
  std::vector<float> rows(8, 1.0f);
  EXPECT_FALSE(engine->capturing());
  EXPECT_FALSE(submit(*engine, 0, rows, 4));  // epoch 1: not captured
  engine->end_epoch(1, 1.0);
  EXPECT_TRUE(engine->capturing());
  EXPECT_TRUE(submit(*engine, 0, rows, 4));
  engine->end_epoch(2, 1.0);
  EXPECT_FALSE(engine->capturing());
  engine->end_epoch(3, 1.0);
  engine->end_epoch(4, 1.0);  // an empty captured epoch still gives a snapshot
  engine->flush();
  EXPECT_EQ(engine->snapshots_written(), 2);
  engine->close();
  auto run = nm::Run::open(engine->options().file());
  ASSERT_EQ(run.size(), 2);
  EXPECT_EQ(run.snapshot(0).layers[0].samples, 2);
  EXPECT_EQ(run.snapshot(1).layers[0].samples, 0);
}

TEST(Engine, EndEpochMustIncrease) {
  auto engine = make_engine("order", nm::Options{}.every(1));
  engine->end_epoch(1, 1.0);
  EXPECT_THROW(engine->end_epoch(1, 1.0), nm::UsageError);
  EXPECT_THROW(engine->end_epoch(0, 1.0), nm::UsageError);
  engine->end_epoch(2, 1.0);
  engine->close();
  EXPECT_THROW(engine->end_epoch(3, 1.0), nm::UsageError);
}

TEST(Engine, NonFiniteRowsAreSkippedAndCounted) {
  auto engine = make_engine("nonfinite", nm::Options{}.every(1));
  std::vector<float> rows = {1, 2, 3, std::numeric_limits<float>::quiet_NaN(), 5, 6,
                             7, std::numeric_limits<float>::infinity(), 9, 3, 4, 5};
  ASSERT_TRUE(submit(*engine, 0, rows, 3));
  engine->end_epoch(1, 1.0);
  engine->flush();
  EXPECT_EQ(engine->counters().nonfinite_rows, 2);
  EXPECT_EQ(engine->counters().rows, 2);
  engine->close();
  auto layer = nm::Run::open(engine->options().file()).snapshot(0).layers[0];
  EXPECT_EQ(layer.samples, 2);
  EXPECT_EQ(layer.counters.nonfinite_rows, 2);
  EXPECT_DOUBLE_EQ(layer.mean[0], 2.0);
  EXPECT_DOUBLE_EQ(layer.mean[2], 4.0);
}

TEST(Engine, DropNewestCountsEveryDroppedBatch) {
  auto engine = make_engine("drop", nm::Options{}.every(1).queue_capacity(2).overflow(nm::Overflow::drop_newest));
  engine->set_worker_delay(0.02);
  std::vector<float> rows(4 * 3, 1.0f);
  int submitted = 0;
  for (int b = 0; b < 50; ++b) submitted += submit(*engine, 0, rows, 3) ? 1 : 0;
  engine->set_worker_delay(0.0);
  engine->end_epoch(1, 1.0);
  engine->flush();
  const auto c = engine->counters();
  EXPECT_EQ(c.captured_batches, 50);
  EXPECT_GT(c.dropped_batches, 0);
  EXPECT_EQ(c.rows, (50 - c.dropped_batches) * 4);
  engine->close();
  auto layer = nm::Run::open(engine->options().file()).snapshot(0).layers[0];
  EXPECT_EQ(layer.counters.dropped_batches, c.dropped_batches);
  EXPECT_EQ(layer.samples, c.rows);
}

TEST(Engine, DropNewestDropsBeforeTheCopyWhenTheQueueIsFull) {
  // A full queue under drop_newest must not hand the probe a buffer to fill (the copy would be thrown
  // away on the training thread): begin_batch gives no ticket and counts the drop.
  auto engine = make_engine("drop_early", nm::Options{}.every(1).queue_capacity(2).overflow(nm::Overflow::drop_newest));
  engine->set_worker_delay(0.5);  // the worker holds its first batch; the queue fills behind it
  std::vector<float> rows(4 * 3, 1.0f);
  for (int b = 0; b < 4; ++b) submit(*engine, 0, rows, 3);
  const auto dropped_before = engine->counters().dropped_batches;
  {
    auto ticket = engine->begin_batch(0);
    EXPECT_FALSE(ticket);
  }
  EXPECT_EQ(engine->counters().dropped_batches, dropped_before + 1);
  engine->set_worker_delay(0.0);
  engine->end_epoch(1, 1.0);
  engine->close();
}

TEST(Engine, BlockLosesNothing) {
  auto engine = make_engine("block", nm::Options{}.every(1).queue_capacity(2).overflow(nm::Overflow::block));
  engine->set_worker_delay(0.005);
  std::vector<float> rows(4 * 3, 1.0f);
  for (int b = 0; b < 30; ++b) ASSERT_TRUE(submit(*engine, 0, rows, 3));
  engine->end_epoch(1, 1.0);
  engine->flush();
  EXPECT_EQ(engine->counters().dropped_batches, 0);
  EXPECT_EQ(engine->counters().rows, 120);
}

TEST(Engine, LargeBatchesKeepAtMostOneBufferPerWorker) {
  // Attention weights take Route::queue_large: however long the queue, the layer's batches live in
  // `workers` buffers; the producer waits for one under Overflow::block, and loses nothing.
  auto engine = make_engine("large", nm::Options{}.every(1).workers(2).queue_capacity(64));
  engine->set_worker_delay(0.01);
  std::vector<float> rows(4 * 3, 1.0f);
  std::set<const nm::detail::Batch*> buffers;
  for (int b = 0; b < 20; ++b) {
    auto ticket = engine->begin_batch(0, false, Engine::Route::queue_large);
    ASSERT_TRUE(ticket);
    buffers.insert(ticket.batch());
    std::copy(rows.begin(), rows.end(), ticket.reserve_values(4, 3));
    engine->submit(std::move(ticket));
    ASSERT_TRUE(submit(*engine, 1, rows, 3));  // the other layer's batches use the shared pool
  }
  engine->set_worker_delay(0.0);
  engine->end_epoch(1, 1.0);
  engine->flush();
  EXPECT_LE(buffers.size(), 2u);
  EXPECT_EQ(engine->counters().dropped_batches, 0);
  EXPECT_EQ(engine->counters().rows, 2 * 20 * 4);
}

TEST(Engine, LargeBatchesAreDroppedWhileEveryWorkerHoldsOneUnderDropNewest) {
  auto engine = make_engine("large_drop", nm::Options{}.every(1).queue_capacity(64).overflow(nm::Overflow::drop_newest));
  engine->set_worker_delay(0.3);  // the one worker holds the layer's one large buffer
  std::vector<float> rows(4 * 3, 1.0f);
  {
    auto first = engine->begin_batch(0, false, Engine::Route::queue_large);
    ASSERT_TRUE(first);
    std::copy(rows.begin(), rows.end(), first.reserve_values(4, 3));
    engine->submit(std::move(first));
  }
  {
    auto second = engine->begin_batch(0, false, Engine::Route::queue_large);
    EXPECT_FALSE(second);
  }
  EXPECT_EQ(engine->counters().dropped_batches, 1);
  EXPECT_TRUE(submit(*engine, 0, rows, 3));  // a batch of ordinary size still gets a buffer
  engine->set_worker_delay(0.0);
  engine->end_epoch(1, 1.0);
  engine->flush();
  EXPECT_EQ(engine->counters().rows, 2 * 4);
}

TEST(Engine, MaxBatchesLimitsEachCapturedEpoch) {
  auto engine = make_engine("max_batches", nm::Options{}.every(1).max_batches(3));
  std::vector<float> rows(2 * 3, 1.0f);
  int accepted = 0;
  for (int b = 0; b < 10; ++b) accepted += submit(*engine, 0, rows, 3) ? 1 : 0;
  EXPECT_EQ(accepted, 3);
  engine->end_epoch(1, 1.0);
  for (int b = 0; b < 10; ++b) accepted += submit(*engine, 0, rows, 3) ? 1 : 0;
  EXPECT_EQ(accepted, 6);
  EXPECT_EQ(engine->counters().skipped_batches, 14);
}

TEST(Engine, ABatchOfAnotherWidthIsSkippedWithAMessage) {
  auto engine = make_engine("width", nm::Options{}.every(1));
  ASSERT_TRUE(submit(*engine, 0, std::vector<float>(6, 1.0f), 3));
  ASSERT_TRUE(submit(*engine, 0, std::vector<float>(8, 1.0f), 4));  // begun, then skipped at submit
  engine->end_epoch(1, 1.0);
  engine->flush();
  EXPECT_EQ(engine->counters().skipped_batches, 1);
  EXPECT_EQ(engine->counters().rows, 2);
  EXPECT_NE(engine->last_error().find("changed from 3 to 4 neurons"), std::string::npos) << engine->last_error();
}

TEST(Engine, TheTransformRunsOnTheWorkers) {
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> on_caller{false};
  auto options = nm::Options{}.every(1).transform([&](nm::RowsView& rows) {
    if (std::this_thread::get_id() == caller) on_caller = true;
    for (std::int64_t r = 0; r < rows.rows; ++r) {
      double norm = 0;
      for (std::int64_t c = 0; c < rows.cols; ++c) norm += rows(r, c) * rows(r, c);
      for (std::int64_t c = 0; c < rows.cols; ++c) rows(r, c) = static_cast<float>(rows(r, c) / std::sqrt(norm));
    }
  });
  auto engine = make_engine("transform", options);
  ASSERT_TRUE(submit(*engine, 0, {3, 4, 6, 8}, 2));
  engine->end_epoch(1, 1.0);
  engine->close();
  EXPECT_FALSE(on_caller);
  auto layer = nm::Run::open(engine->options().file()).snapshot(0).layers[0];
  EXPECT_NEAR(layer.mean[0], 0.6, 1e-6);
  EXPECT_NEAR(layer.mean[1], 0.8, 1e-6);
}

TEST(Engine, ProducersOnManyThreadsLoseNothing) {
  auto engine = make_engine("threads", nm::Options{}.every(1).workers(2).queue_capacity(4));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<float> rows(5 * 2, static_cast<float>(t));
      for (int b = 0; b < 100; ++b) submit(*engine, t % 2, rows, 2);
    });
  }
  for (auto& t : threads) t.join();
  engine->end_epoch(1, 1.0);
  engine->flush();
  EXPECT_EQ(engine->counters().rows, 4 * 100 * 5);
  engine->close();
  auto snapshot = nm::Run::open(engine->options().file()).snapshot(0);
  EXPECT_EQ(snapshot.layers[0].samples + snapshot.layers[1].samples, 2000);
}

// The workers' per-batch work runs on the worker threads alone (no parallel loop wakes a TBB arena,
// and the products use the private serial BLAS, which has no threads): the process gains exactly
// the engine's own threads, a worker and the snapshot thread.
TEST(Engine, WorkersAddNoThreadsBeyondTheirOwn) {
  auto threads = [] {
    std::int64_t n = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator("/proc/self/task")) ++n;
    return n;
  };
  // A sanitizer's runtime starts a helper thread of its own at the process's first pthread_create
  // (TSan's background thread): one thread created and joined first keeps it out of the count.
  std::thread([] {}).join();
  const std::int64_t before = threads();
  auto engine = make_engine("threads", nm::Options{}.every(1).workers(1));
  std::mt19937_64 rng(3);
  const std::int64_t cols = 512;  // wide enough that a parallel centring or product would split
  const auto rows = random_rows(rng, 128, cols, 0.0);
  for (int b = 0; b < 20; ++b) ASSERT_TRUE(submit(*engine, 0, rows, cols));
  while (engine->counters().rows < 20 * 128) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(threads(), before + 2);
  engine->close();
}

// Options::worker_priority: normal (the default) leaves the workers as the training's threads, idle
// schedules them SCHED_IDLE while their queue is short.
TEST(Engine, WorkerPriorityIdleSchedulesTheWorkersIdle) {
  auto worker_policies = [] {
    std::vector<int> policies;
    for (const auto& entry : fs::directory_iterator("/proc/self/task")) {
      std::ifstream comm(entry.path() / "comm");
      std::string name;
      std::getline(comm, name);
      if (name == "nm-worker") policies.push_back(sched_getscheduler(std::stoi(entry.path().filename().string())));
    }
    return policies;
  };
  {
    auto engine = make_engine("idle", nm::Options{}.every(1).workers(2).worker_priority(nm::WorkerPriority::idle));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the workers set their policy as they start
    EXPECT_EQ(worker_policies(), (std::vector<int>{SCHED_IDLE, SCHED_IDLE}));
  }
  auto engine = make_engine("normal", nm::Options{}.every(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(worker_policies(), std::vector<int>{SCHED_OTHER});
}

// An idle-priority worker returns to the normal policy while its queue is more than half full (on a
// busy machine an idle-class thread starves, and a full queue would hold the training), and goes back
// to idle once the queue is below a quarter.
TEST(Engine, AnIdleWorkerTurnsNormalWhileItsQueueIsLong) {
  auto policy = [] {
    for (const auto& entry : fs::directory_iterator("/proc/self/task")) {
      std::ifstream comm(entry.path() / "comm");
      std::string name;
      std::getline(comm, name);
      if (name == "nm-worker") return sched_getscheduler(std::stoi(entry.path().filename().string()));
    }
    return -1;
  };
  auto engine = make_engine("escalate", nm::Options{}.every(1).queue_capacity(8).worker_priority(nm::WorkerPriority::idle));
  engine->set_worker_delay(0.05);
  std::mt19937_64 rng(5);
  const auto rows = random_rows(rng, 4, 8, 0.0);
  for (int b = 0; b < 9; ++b) ASSERT_TRUE(submit(*engine, 0, rows, 8));  // the worker holds one, 8 wait
  // Past the first batch's 50 ms: the worker has taken a second one with 7 still waiting.
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  EXPECT_EQ(policy(), SCHED_OTHER);
  engine->set_worker_delay(0);
  while (engine->counters().rows < 9 * 4) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(policy(), SCHED_IDLE);
  engine->close();
}
