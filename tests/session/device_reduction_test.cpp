// Statistics reduced on the outputs' device (Options::reduce_on_device) against the worker path: the
// same batches give the same accumulator (float64 within 1e-9 relative, the reservoir identical), and a
// whole training run gives the same run file. On this machine the "device" is the CPU: the ATen code
// path is the one a CUDA output takes.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "neuronmap/neuronmap.hpp"
#include "session/device_reduction.hpp"
#include "session/testing.hpp"
#include "stream/accumulator.hpp"
#include "test_dir.hpp"

namespace nm = neuronmap;
using neuronmap::detail::DeviceReduction;
using neuronmap::detail::LayerAccumulator;

namespace {

// This test's own fresh directory (tests/test_dir.hpp); call it once per test: it empties the directory.
std::string fresh_dir() { return neuronmap::test::fresh_test_dir("device_reduction"); }

void expect_close(double actual, double expected, double relative, const char* what, std::int64_t i) {
  EXPECT_NEAR(actual, expected, relative * std::max(1.0, std::abs(expected))) << what << " [" << i << "]";
}

// Batches with a mean far from zero (the centring matters), a few rows of NaN/Inf, and columns of
// different scales.
std::vector<torch::Tensor> make_batches(std::int64_t count, std::int64_t rows, std::int64_t cols) {
  torch::manual_seed(7);
  std::vector<torch::Tensor> batches;
  const auto scale = torch::linspace(0.1, 10.0, cols);
  for (std::int64_t b = 0; b < count; ++b) {
    auto x = torch::randn({rows, cols}) * scale + 3.0;
    if (b % 3 == 1) x[b % rows][b % cols] = std::numeric_limits<float>::quiet_NaN();
    if (b % 5 == 2) x[(b + 1) % rows][0] = std::numeric_limits<float>::infinity();
    batches.push_back(x);
  }
  return batches;
}

// The worker path: every batch through LayerAccumulator::add_batch.
LayerAccumulator on_the_worker(const std::vector<torch::Tensor>& batches, std::int64_t reservoir, std::uint64_t seed) {
  LayerAccumulator acc;
  for (std::size_t b = 0; b < batches.size(); ++b) {
    const auto x = batches[b].contiguous();
    acc.add_batch(x.data_ptr<float>(), x.size(0), x.size(1), static_cast<std::int64_t>(b), static_cast<std::int64_t>(b),
                  reservoir, seed);
  }
  return acc;
}

// The device path, handed over every `every` batches and merged as a worker merges it.
LayerAccumulator on_the_device(const std::vector<torch::Tensor>& batches, std::int64_t reservoir, std::uint64_t seed,
                               std::size_t every) {
  DeviceReduction::Settings settings;
  settings.reservoir_size = reservoir;
  settings.seed = seed;
  DeviceReduction reduction(settings);
  const int window = 0;
  LayerAccumulator acc;
  for (std::size_t b = 0; b < batches.size(); ++b) {
    reduction.add(batches[b], static_cast<std::int64_t>(b), {batches[b].size(0), batches[b].size(1)}, &window);
    if ((b + 1) % every == 0 || b + 1 == batches.size())
      neuronmap::detail::merge_accumulator(acc, std::move(*reduction.take()), /*parallel=*/false);
  }
  return acc;
}

void expect_same_accumulator(const LayerAccumulator& device, const LayerAccumulator& worker) {
  ASSERT_TRUE(device.moments && worker.moments);
  const auto& d = *device.moments;
  const auto& w = *worker.moments;
  ASSERT_EQ(d.n_neurons(), w.n_neurons());
  EXPECT_EQ(d.count(), w.count());
  EXPECT_EQ(device.rows, worker.rows);
  EXPECT_EQ(device.nonfinite_rows, worker.nonfinite_rows);
  EXPECT_EQ(device.batch_rows, worker.batch_rows);
  const auto n = d.n_neurons();
  double worst = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    expect_close(d.mean()(i), w.mean()(i), 1e-9, "mean", i);
    EXPECT_EQ(d.min()(i), w.min()(i)) << i;
    EXPECT_EQ(d.max()(i), w.max()(i)) << i;
    expect_close(device.sum_abs[static_cast<std::size_t>(i)], worker.sum_abs[static_cast<std::size_t>(i)], 1e-9,
                 "sum |a|", i);
    for (std::int64_t j = i; j < n; ++j) {
      // Relative to the diagonal's scale: an off-diagonal co-moment near zero has no relative error to speak of.
      const double scale = std::sqrt(w.comoment(i, i) * w.comoment(j, j));
      const double error = std::abs(d.comoment(i, j) - w.comoment(i, j)) / scale;
      worst = std::max(worst, error);
      EXPECT_LE(error, 1e-9) << "co-moment (" << i << ", " << j << ")";
    }
  }
  testing::Test::RecordProperty("max_relative_comoment_difference", std::to_string(worst));
  const auto [device_rows, device_ids] = device.reservoir.sorted_rows();
  const auto [worker_rows, worker_ids] = worker.reservoir.sorted_rows();
  EXPECT_EQ(device_ids, worker_ids);
  EXPECT_EQ(device_rows, worker_rows);  // bit for bit: the same float32 rows
}

}  // namespace

TEST(DeviceReduction, EqualsTheWorkerPathBatchByBatch) {
  const auto batches = make_batches(40, 64, 24);
  const auto worker = on_the_worker(batches, 100, 42);
  for (std::size_t every : {1, 7, 32, 40}) {
    SCOPED_TRACE("handed over every " + std::to_string(every) + " batches");
    expect_same_accumulator(on_the_device(batches, 100, 42, every), worker);
  }
  EXPECT_GT(worker.nonfinite_rows, 0);
  EXPECT_EQ(worker.reservoir.size(), 100);
}

TEST(DeviceReduction, AReservoirLargerThanTheRowsKeepsEveryFiniteRow) {
  const auto batches = make_batches(5, 16, 8);
  const auto worker = on_the_worker(batches, 1000, 3);
  expect_same_accumulator(on_the_device(batches, 1000, 3, 2), worker);
  EXPECT_EQ(worker.reservoir.size(), worker.rows);
}

TEST(DeviceReduction, GradientsAreSummedOverFiniteBatchesOnly) {
  DeviceReduction reduction(DeviceReduction::Settings{});
  const int window = 0;
  const auto a = torch::rand({6, 4});
  const auto p = torch::randn({6, 4});
  reduction.add_gradient(a, p, &window);
  auto bad = p.clone();
  bad[2][1] = std::numeric_limits<float>::quiet_NaN();
  reduction.add_gradient(a, bad, &window);  // left out whole, as the workers leave it out
  const auto acc = reduction.take();
  EXPECT_EQ(acc->gradients.rows, 6);
  const auto sum_a = a.to(torch::kDouble).sum(0), sum_p = p.to(torch::kDouble).sum(0);
  for (std::int64_t c = 0; c < 4; ++c) {
    expect_close(acc->gradients.sum_abs[static_cast<std::size_t>(c)], sum_a[c].item<double>(), 1e-12, "|g|", c);
    expect_close(acc->gradients.sum_product[static_cast<std::size_t>(c)], sum_p[c].item<double>(), 1e-12, "a g", c);
  }
  EXPECT_FALSE(acc->moments);
}

TEST(DeviceReduction, AnotherWindowDropsWhatWasPending) {
  DeviceReduction reduction(DeviceReduction::Settings{});
  const int first = 0, second = 0;
  reduction.add(torch::ones({3, 2}), 0, {3, 2}, &first);
  reduction.add(torch::zeros({2, 2}), 0, {2, 2}, &second);
  EXPECT_EQ(reduction.pending_batches(), 1);
  EXPECT_EQ(reduction.take()->moments->count(), 2);
}

TEST(DeviceReduction, AChangedWidthIsRefused) {
  DeviceReduction reduction(DeviceReduction::Settings{});
  const int window = 0;
  reduction.add(torch::ones({3, 2}), 0, {3, 2}, &window);
  EXPECT_THROW(reduction.add(torch::ones({3, 5}), 1, {3, 5}, &window), std::invalid_argument);
}

namespace {

struct NetImpl : torch::nn::Module {
  NetImpl()
      : fc1(register_module("fc1", torch::nn::Linear(12, 20))),
        fc2(register_module("fc2", torch::nn::Linear(20, 8))),
        fc3(register_module("fc3", torch::nn::Linear(8, 3))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc3(torch::relu(fc2(torch::relu(fc1(x))))); }
  torch::nn::Linear fc1, fc2, fc3;
};
TORCH_MODULE(Net);

// Trains a fresh copy of the same net for `epochs` epochs of `batches` batches, with one NaN input batch
// per epoch, writing the run file `path`, and returns `path`.
std::string train(const std::string& path, nm::Options options, int epochs, int batches) {
  torch::manual_seed(11);
  Net net;
  auto session = nm::attach(*net, {"fc1", "fc2", "fc3"},
                            std::move(options).every(1).file(path).overwrite(true).gradients(true).reservoir_size(150));
  torch::optim::SGD optimizer(net->parameters(), 0.05);
  torch::manual_seed(12);
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    for (int b = 0; b < batches; ++b) {
      auto x = torch::randn({16, 12});
      if (b == 5) x[3][2] = std::numeric_limits<float>::quiet_NaN();
      const auto y = torch::randint(0, 3, {16});
      optimizer.zero_grad();
      const auto logits = net->forward(x);
      auto loss = torch::nn::functional::cross_entropy(logits, y);
      if (b != 5) {  // a NaN loss would poison the weights; the NaN batch only runs forward
        loss.backward();
        optimizer.step();
      }
    }
    session.end_epoch(epoch, 1.0);
  }
  session.flush();
  EXPECT_EQ(session.last_error(), "");
  return path;
}

}  // namespace

TEST(DeviceReduction, ARunReducedOnTheDeviceEqualsTheWorkersRun) {
  // 40 batches an epoch: one hand-over after 32, one at end_epoch.
  const auto dir = fresh_dir();
  const auto worker_path = train(dir + "/worker.h5", nm::Options{}, 2, 40);
  const auto device_path = train(dir + "/device.h5", nm::Options{}.reduce_on_device(true), 2, 40);
  const auto worker = nm::Run::open(worker_path);
  const auto device = nm::Run::open(device_path);
  ASSERT_EQ(worker.size(), 2);
  ASSERT_EQ(device.size(), 2);
  for (std::int64_t s = 0; s < 2; ++s) {
    const auto w = worker.snapshot(s), d = device.snapshot(s);
    ASSERT_EQ(w.layers.size(), d.layers.size());
    for (std::size_t l = 0; l < w.layers.size(); ++l) {
      const auto& wl = w.layers[l];
      const auto& dl = d.layers[l];
      SCOPED_TRACE("snapshot " + std::to_string(s) + ", layer " + wl.name);
      EXPECT_EQ(dl.samples, wl.samples);
      EXPECT_EQ(dl.counters.captured_batches, wl.counters.captured_batches);
      EXPECT_EQ(dl.counters.rows, wl.counters.rows);
      EXPECT_EQ(dl.counters.nonfinite_rows, wl.counters.nonfinite_rows);
      EXPECT_GT(wl.counters.nonfinite_rows, 0);
      EXPECT_EQ(dl.gradient_samples, wl.gradient_samples);
      EXPECT_EQ(dl.output_shape, wl.output_shape);
      for (std::size_t i = 0; i < wl.mean.size(); ++i) {
        const auto n = static_cast<std::int64_t>(i);
        expect_close(dl.mean[i], wl.mean[i], 1e-9, "mean", n);
        expect_close(dl.stddev[i], wl.stddev[i], 1e-9, "stddev", n);
        EXPECT_EQ(dl.min[i], wl.min[i]);
        EXPECT_EQ(dl.max[i], wl.max[i]);
        expect_close(dl.mean_abs[i], wl.mean_abs[i], 1e-9, "mean |a|", n);
        expect_close(dl.grad_mean_abs[i], wl.grad_mean_abs[i], 1e-9, "mean |g|", n);
        expect_close(dl.taylor[i], wl.taylor[i], 1e-9, "taylor", n);
      }
      ASSERT_EQ(dl.correlation.size(), wl.correlation.size());
      for (std::size_t k = 0; k < wl.correlation.size(); ++k) {
        EXPECT_NEAR(dl.correlation[k], wl.correlation[k], 1e-6) << k;  // stored as float32
      }
      EXPECT_EQ(dl.reservoir_ids, wl.reservoir_ids);
      EXPECT_EQ(dl.reservoir, wl.reservoir);
      EXPECT_EQ(dl.labels, wl.labels);
    }
  }
}

TEST(DeviceReduction, RefusesATransform) {
  const auto transform = [](nm::RowsView&) {};
  EXPECT_THROW(nm::Options{}.reduce_on_device(true).transform(transform).validate(), nm::UsageError);
}

TEST(DeviceReduction, OnlyTheTotalsCrossTheQueue) {
  // A slow worker behind a queue of two under drop_newest: batch by batch, the worker path drops most
  // of an epoch's 120 batches; reduced on the device, the queue carries a few partial batches (never
  // dropped), and every batch is in the statistics.
  torch::manual_seed(11);
  Net net;
  const auto path = fresh_dir() + "/queue.h5";
  auto session = nm::attach(*net, {"fc1", "fc2", "fc3"},
                            nm::Options{}.every(1).file(path).overwrite(true).reduce_on_device(true).queue_capacity(2).overflow(
                                nm::Overflow::drop_newest));
  nm::detail::set_worker_delay(session, 0.02);
  for (int b = 0; b < 40; ++b) net->forward(torch::randn({16, 12}));
  session.end_epoch(1, 1.0);
  session.flush();
  const auto counters = session.counters();
  EXPECT_EQ(counters.captured_batches, 120);
  EXPECT_EQ(counters.dropped_batches, 0);
  EXPECT_EQ(counters.rows, 120 * 16);
  EXPECT_EQ(session.last_error(), "");
  EXPECT_EQ(nm::Run::open(path).snapshot(0).layers.at(0).samples, 40 * 16);
}

TEST(DeviceReduction, ALayerWiderThanTheLimitIsCopiedAsBefore) {
  // 4,100 neurons: N x N float64 totals would take 134 MB of the device's memory, so the batches take
  // the workers' path, and a slow worker behind a 2-slot drop_newest queue drops some of them (on the
  // device path none would be dropped: OnlyTheTotalsCrossTheQueue).
  torch::manual_seed(3);
  torch::nn::Sequential net(torch::nn::Linear(8, DeviceReduction::kMaxNeurons + 4));
  const auto path = fresh_dir() + "/wide.h5";
  auto session = nm::attach(*net, {"0"},
                            nm::Options{}.every(1).file(path).overwrite(true).reduce_on_device(true).queue_capacity(2).overflow(
                                nm::Overflow::drop_newest).store_correlation(false));
  nm::detail::set_worker_delay(session, 0.02);
  for (int b = 0; b < 20; ++b) net->forward(torch::randn({4, 8}));
  const auto counters = session.counters();  // no snapshot: the analysis of 4,100 neurons is not the point
  EXPECT_EQ(counters.captured_batches, 20);
  EXPECT_GT(counters.dropped_batches, 0);
  nm::detail::set_worker_delay(session, 0.0);
}
