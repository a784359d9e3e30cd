// The distributed merge without processes or LibTorch: encode/decode/merge of the ranks' accumulators,
// and engines in threads joined by an in-memory Communicator (the c10d one is tested in tests/distributed).
#include <gtest/gtest.h>

#include "thread_communicator.hpp"

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "neuronmap/errors.hpp"
#include "neuronmap/run.hpp"
#include "neuronmap/version.hpp"
#include "stream/engine.hpp"
#include "stream/exchange.hpp"

namespace nm = neuronmap;
namespace fs = std::filesystem;
using nm::detail::Engine;
using nm::detail::LayerAccumulator;
using nm::detail::RankWindow;

namespace {

std::vector<float> random_rows(std::mt19937_64& rng, std::int64_t rows, std::int64_t cols, double offset) {
  std::normal_distribution<double> normal;
  std::vector<float> out(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    const double z = normal(rng);
    for (std::int64_t c = 0; c < cols; ++c)
      out[static_cast<std::size_t>(r * cols + c)] = static_cast<float>(offset + (c % 2 == 0 ? z : 0.0) + 0.5 * normal(rng));
  }
  return out;
}

void add_batch(LayerAccumulator& acc, std::int64_t global_batch, const std::vector<float>& rows, std::int64_t cols) {
  const auto n = static_cast<std::int64_t>(rows.size()) / cols;
  if (!acc.moments) {
    acc.moments.emplace(cols);
    acc.reservoir = nm::detail::Reservoir(25, cols, 42);
  }
  acc.moments->add(rows.data(), n);
  for (std::int64_t r = 0; r < n; ++r) acc.reservoir.offer(nm::detail::sample_id(global_batch, r), rows.data() + r * cols);
  acc.rows += n;
}

/// `n` ranks' windows of one layer each, empty.
std::vector<RankWindow> one_layer_ranks(std::size_t n) {
  std::vector<RankWindow> ranks(n);
  for (auto& r : ranks) {
    r.layers.resize(1);
    r.counters.resize(1);
    r.observed.resize(1);
  }
  return ranks;
}

}  // namespace

// Three ranks hold interleaved batches; rank 0 merges the others' decoded parts. The result must equal
// one accumulator over every batch: moments to float64 rounding, min/max, counts and the reservoir exactly.
TEST(Exchange, MergedRanksEqualOneAccumulatorOverTheUnion) {
  const std::int64_t cols = 6;
  std::mt19937_64 rng(3);
  LayerAccumulator all;
  auto ranks = one_layer_ranks(3);
  for (auto& r : ranks) r.losses = {1.0, 2.0};
  for (std::int64_t b = 0; b < 30; ++b) {
    const auto rows = random_rows(rng, 5 + b % 7, cols, 500.0);
    add_batch(all, b, rows, cols);
    auto& part = ranks[static_cast<std::size_t>(b % 3)];
    add_batch(part.layers[0], b, rows, cols);
    part.counters[0].captured_batches += 1;
  }
  for (auto& r : ranks) {
    for (const auto id : r.layers[0].reservoir.sorted_rows().second) r.observed[0][id] = {static_cast<std::int32_t>(id % 5), 0.5f};
  }
  RankWindow merged = std::move(ranks[0]);
  for (std::size_t r = 1; r < 3; ++r) {
    const auto bytes = nm::detail::encode(ranks[r]);
    nm::detail::merge_into(merged, nm::detail::decode(bytes, 25, 42));
  }
  const auto& got = *merged.layers[0].moments;
  const auto& want = *all.moments;
  ASSERT_EQ(got.count(), want.count());
  EXPECT_EQ(merged.layers[0].rows, all.rows);
  EXPECT_EQ(merged.counters[0].captured_batches, 30);
  EXPECT_EQ(got.min(), want.min());
  EXPECT_EQ(got.max(), want.max());
  for (std::int64_t i = 0; i < cols; ++i) {
    EXPECT_NEAR(got.mean()(i), want.mean()(i), 1e-12 * std::abs(want.mean()(i)));
    for (std::int64_t j = 0; j < cols; ++j)
      EXPECT_NEAR(got.comoment(i, j), want.comoment(i, j), 1e-10 * std::abs(want.comoment(i, i)));
  }
  const auto [rows, ids] = merged.layers[0].reservoir.sorted_rows();
  const auto [want_rows, want_ids] = all.reservoir.sorted_rows();
  EXPECT_EQ(ids, want_ids);
  EXPECT_EQ(rows, want_rows);
  for (const auto id : ids) ASSERT_EQ(merged.observed[0].at(id).tag, id % 5);
  EXPECT_EQ(merged.losses, (std::vector<double>{3.0, 6.0}));  // sums; the engine divides by loss_ranks
  EXPECT_EQ(merged.loss_ranks, 3);
}

// Attention layers: each rank's per-head sums travel with its moments, so rank 0's head statistics
// cover every rank's batches (before, rank 0 stored those of its own shard only).
TEST(Exchange, HeadStatisticsOfEveryRankAreMerged) {
  const std::int64_t B = 2, H = 3, T = 5, cols = H;
  const std::vector<std::int64_t> shape{B, H, T, T};
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  auto attention_rows = [&] {  // row (b, t, s) x heads; causal softmax weights per (b, h, t)
    std::vector<float> rows(static_cast<std::size_t>(B * T * T * H), 0.0f);
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t t = 0; t < T; ++t) {
          std::vector<double> w(static_cast<std::size_t>(t + 1));
          double total = 0;
          for (auto& x : w) total += (x = std::exp(3.0 * uniform(rng) * static_cast<double>(h)));
          for (std::int64_t s = 0; s <= t; ++s)
            rows[static_cast<std::size_t>(((b * T + t) * T + s) * H + h)] = static_cast<float>(w[static_cast<std::size_t>(s)] / total);
        }
    return rows;
  };
  LayerAccumulator all;
  auto ranks = one_layer_ranks(2);
  for (std::int64_t b = 0; b < 7; ++b) {
    const auto rows = attention_rows();
    const auto n = static_cast<std::int64_t>(rows.size()) / cols;
    add_batch(all, b, rows, cols);
    all.heads.add(rows.data(), n, cols, shape);
    auto& part = ranks[static_cast<std::size_t>(b % 2)].layers[0];
    add_batch(part, b, rows, cols);
    part.heads.add(rows.data(), n, cols, shape);
  }
  RankWindow merged = std::move(ranks[0]);
  nm::detail::merge_into(merged, nm::detail::decode(nm::detail::encode(ranks[1]), 25, 42));
  const auto got = merged.layers[0].heads.finish();
  const auto want = all.heads.finish();
  ASSERT_EQ(got.size(), static_cast<std::size_t>(H));
  for (std::size_t h = 0; h < got.size(); ++h) {
    EXPECT_EQ(got[h].queries, want[h].queries);
    EXPECT_EQ(got[h].queries, 7 * B * T);
    EXPECT_NEAR(got[h].entropy_mean, want[h].entropy_mean, 1e-12);
    EXPECT_NEAR(got[h].entropy_std, want[h].entropy_std, 1e-12);
    EXPECT_NEAR(got[h].distance_mean, want[h].distance_mean, 1e-12);
    EXPECT_NEAR(got[h].concentration, want[h].concentration, 1e-12);
    EXPECT_EQ(got[h].collapsed_fraction, want[h].collapsed_fraction);
    ASSERT_EQ(got[h].offset_weight.size(), want[h].offset_weight.size());
    for (std::size_t k = 0; k < got[h].offset_weight.size(); ++k)
      EXPECT_NEAR(got[h].offset_weight[k], want[h].offset_weight[k], 1e-12);
    EXPECT_EQ(got[h].role, want[h].role);
  }
  // A rank's own shard alone is not the union: the merge is what made them equal.
  EXPECT_NE(nm::detail::decode(nm::detail::encode(ranks[1]), 25, 42).layers[0].heads.finish()[0].queries, want[0].queries);
}

TEST(Exchange, DecodeRefusesDamagedBuffers) {
  RankWindow part;
  part.layers.resize(1);
  std::mt19937_64 rng(1);
  add_batch(part.layers[0], 0, random_rows(rng, 4, 3, 0.0), 3);
  auto bytes = nm::detail::encode(part);
  EXPECT_NO_THROW(nm::detail::decode(bytes, 25, 42));
  auto truncated = bytes;
  truncated.pop_back();
  EXPECT_THROW(nm::detail::decode(truncated, 25, 42), std::runtime_error);
  auto foreign = bytes;
  foreign[0] ^= 0xff;
  EXPECT_THROW(nm::detail::decode(foreign, 25, 42), std::runtime_error);
  RankWindow two_layers;
  two_layers.layers.resize(2);
  EXPECT_THROW(nm::detail::merge_into(two_layers, nm::detail::decode(bytes, 25, 42)), std::runtime_error);

  // Head statistics that do not fit the layer (2 heads on a 3-neuron layer) are refused, not merged.
  const std::vector<float> weights(2 * 1 * 1 * 2, 0.5f);  // B = 1, T = S = 2, H = 2: rows of 2 heads
  part.layers[0].heads.add(weights.data(), 2, 2, {1, 2, 1, 2});
  try {
    nm::detail::decode(nm::detail::encode(part), 25, 42);
    ADD_FAILURE() << "decoded head statistics of another width";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("head statistics of another width"), std::string::npos) << e.what();
  }
}

namespace {

using neuronmap::test::Rendezvous;
using neuronmap::test::ThreadCommunicator;

std::unique_ptr<Engine> make_engine(const std::string& file, nm::Options options) {
  std::vector<nm::LayerInfo> infos{{"layer0", "test", "rows as is"}};
  nm::RunInfo info;
  info.format_version = nm::kFormatVersion;
  info.library_version = "test";
  info.layers = infos;
  return std::make_unique<Engine>(infos, std::move(options.file(file).overwrite(true)), info, Engine::Hooks{});
}

// Rank r submits batches b with b % world == r in each captured epoch, then ends `epochs` epochs.
void run_rank(Engine& engine, int rank, int world, int epochs, double loss) {
  const std::int64_t cols = 5;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    std::mt19937_64 rng(static_cast<std::uint64_t>(epoch));  // the same data for every process
    for (int b = 0; b < 12; ++b) {
      const auto rows = random_rows(rng, 8, cols, 100.0);
      if (world > 0 && b % world != rank) continue;
      auto ticket = engine.begin_batch(0);
      if (!ticket) continue;
      std::copy(rows.begin(), rows.end(), ticket.reserve_values(8, cols));
      engine.submit(std::move(ticket));
    }
    engine.end_epoch(epoch, loss);
  }
  engine.flush();
}

}  // namespace

TEST(Exchange, EnginesInThreadsEqualOneEngine) {
  const auto dir = fs::temp_directory_path() / "neuronmap_exchange_tests";
  fs::create_directories(dir);
  const auto options = nm::Options{}.every(2).reservoir_size(30).workers(2);
  auto single = make_engine((dir / "single.h5").string(), options);
  run_rank(*single, 0, 0, 4, 2.0);
  single->close();

  const int world = 3;
  auto meeting = std::make_shared<Rendezvous>(world, std::chrono::milliseconds(300));
  std::vector<std::unique_ptr<Engine>> engines;
  for (int r = 0; r < world; ++r) {
    auto o = options;
    o.communicator(std::make_shared<ThreadCommunicator>(meeting, r));
    engines.push_back(make_engine(r == 0 ? (dir / "threads.h5").string() : (dir / "missing" / "x.h5").string(), o));
  }
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) threads.emplace_back([&, r] { run_rank(*engines[static_cast<std::size_t>(r)], r, world, 4, 1.0 + r); });
  for (auto& t : threads) t.join();
  for (auto& e : engines) {
    e->close();
    EXPECT_EQ(e->last_error(), "");
    EXPECT_EQ(e->snapshots_written(), 2);
  }
  const auto a = nm::Run::open((dir / "threads.h5").string());
  const auto b = nm::Run::open((dir / "single.h5").string());
  ASSERT_EQ(a.size(), 2);
  ASSERT_EQ(b.size(), 2);
  for (std::int64_t i = 0; i < 2; ++i) {
    const auto x = a.snapshot(i), y = b.snapshot(i);
    EXPECT_DOUBLE_EQ(x.loss, 2.0);  // the mean of the ranks' 1, 2, 3
    const auto &l = x.layers[0], &m = y.layers[0];
    EXPECT_EQ(l.samples, m.samples);
    EXPECT_EQ(l.counters.captured_batches, m.counters.captured_batches);
    EXPECT_EQ(l.min, m.min);
    for (std::size_t k = 0; k < m.mean.size(); ++k) {
      EXPECT_NEAR(l.mean[k], m.mean[k], 1e-12 * std::abs(m.mean[k]));
      EXPECT_NEAR(l.stddev[k], m.stddev[k], 1e-10 * m.stddev[k]);
    }
    EXPECT_EQ(l.reservoir_ids, m.reservoir_ids);
    EXPECT_EQ(l.reservoir, m.reservoir);
    EXPECT_EQ(l.labels, m.labels);
  }
}

// Rank 1 stops after epoch 3: rank 0's epoch-4 snapshot fails after the timeout, end_epoch returns,
// the error says what happened, nothing more is captured, and the file keeps the epoch-2 snapshot.
TEST(Exchange, AMissingRankIsRecordedAndTheFileKeepsEarlierSnapshots) {
  const auto dir = fs::temp_directory_path() / "neuronmap_exchange_tests";
  fs::create_directories(dir);
  auto meeting = std::make_shared<Rendezvous>(2, std::chrono::milliseconds(300));
  auto rank0 = make_engine((dir / "missing_rank.h5").string(),
                           nm::Options{}.every(2).communicator(std::make_shared<ThreadCommunicator>(meeting, 0)));
  auto rank1 = make_engine((dir / "missing" / "x.h5").string(),
                           nm::Options{}.every(2).communicator(std::make_shared<ThreadCommunicator>(meeting, 1)));
  std::thread other([&] { run_rank(*rank1, 1, 2, 3, 1.0); });
  EXPECT_NO_THROW(run_rank(*rank0, 0, 2, 6, 1.0));
  other.join();
  EXPECT_FALSE(rank0->capturing());
  rank0->close();
  rank1->close();
  EXPECT_EQ(rank0->snapshots_written(), 1);
  EXPECT_EQ(rank0->last_error(),
            "distributed snapshot at epoch 4 (threads, rank 0): a rank did not arrive within 300 ms; this and later "
            "snapshots are not written, the run file keeps the earlier ones");
  const auto run = nm::Run::open((dir / "missing_rank.h5").string());
  ASSERT_EQ(run.size(), 1);
  EXPECT_EQ(run.snapshot(0).epoch, 2);
  EXPECT_GT(run.snapshot(0).layers[0].samples, 0);
}
