// One training step plain vs attached (captured epoch) vs attached (uncaptured epoch), for an MLP
// 784-512-512-10 and a small CNN at batch 128, and the MNIST example's network (train step + eval pass). Run with random interleaving so that the machine's
// noise hits all variants alike (bench/training/run.sh does, and prints the ratios).
#include <benchmark/benchmark.h>

#include <torch/torch.h>

#include <filesystem>
#include <optional>
#include <vector>

#include "models.hpp"

namespace {

using namespace bench;

template <typename Net>
void training_step(benchmark::State& state, const std::vector<std::string>& layers, torch::IntArrayRef input_shape,
                   const std::vector<std::int64_t>& co_runner_widths = {}) {
  torch::set_num_threads(1);
  torch::manual_seed(0);
  Net net;
  torch::optim::SGD optimizer(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  const auto x = torch::randn(input_shape);
  const auto y = torch::randint(0, 10, {input_shape[0]}, torch::kLong);
  const auto mode = static_cast<Mode>(state.range(0));
  std::optional<neuronmap::Session> session;
  const auto path = (std::filesystem::temp_directory_path() / "neuronmap_bench_training.h5").string();
  std::optional<CoRunner> co_runner;
  if (mode == kPlainCoRunner) {
    co_runner.emplace(co_runner_widths, input_shape[0]);
  } else if (mode != kPlain) {
    session.emplace(neuronmap::attach(*net, layers, mode_options(mode, path)));
  }
  for (auto _ : state) {
    optimizer.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    optimizer.step();
    benchmark::DoNotOptimize(loss.data_ptr());
    if (co_runner) co_runner->step();
  }
  if (session) {
    const auto c = session->counters();
    state.counters["captured_batches"] = static_cast<double>(c.captured_batches);
    state.counters["dropped"] = static_cast<double>(c.dropped_batches);
    state.counters["budget_skipped"] = static_cast<double>(c.budget_skipped_batches);
    session->close();
  }
  state.SetLabel(mode_label(mode));
}

// The MNIST example's train step followed by its evaluation forward pass (eval mode, no_grad, the
// example's test batch of 1000), as one unit: the probes capture both.
void BM_MnistStep(benchmark::State& state) {
  torch::set_num_threads(1);
  torch::manual_seed(0);
  Mnist net;
  torch::optim::SGD optimizer(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.5));
  const auto x = torch::randn({64, 1, 28, 28});
  const auto y = torch::randint(0, 10, {64}, torch::kLong);
  const auto test_x = torch::randn({1000, 1, 28, 28});
  const auto mode = static_cast<Mode>(state.range(0));
  std::optional<neuronmap::Session> session;
  const auto path = (std::filesystem::temp_directory_path() / "neuronmap_bench_mnist.h5").string();
  if (mode != kPlain) session.emplace(neuronmap::attach(*net, {"conv1", "conv2", "fc1", "fc2"}, mode_options(mode, path)));
  for (auto _ : state) {
    net->train();
    optimizer.zero_grad();
    auto loss = torch::nll_loss(net->forward(x), y);
    loss.backward();
    optimizer.step();
    net->eval();
    torch::NoGradGuard no_grad;
    benchmark::DoNotOptimize(net->forward(test_x).data_ptr());
  }
  if (session) session->close();
  state.SetLabel(mode_label(mode));
}

void BM_MlpStep(benchmark::State& state) { training_step<Mlp>(state, {"fc1", "fc2", "fc3"}, {128, 784}, {512, 512, 10}); }
void BM_CnnStep(benchmark::State& state) { training_step<Cnn>(state, {"conv1", "conv2", "fc1"}, {128, 3, 32, 32}); }

BENCHMARK(BM_MlpStep)->Arg(kPlain)->Arg(kCaptured)->Arg(kUncaptured)->Arg(kCapturedFloat32)->Arg(kCapturedBudget5)->Arg(kCapturedOnDevice)->Arg(kCallbacksOnly)->Arg(kPlainCoRunner)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CnnStep)->Arg(kPlain)->Arg(kCaptured)->Arg(kUncaptured)->Arg(kCallbacksOnly)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MnistStep)->Arg(kPlain)->Arg(kCaptured)->Arg(kUncaptured)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
