// One training step plain vs attached (captured epoch) vs attached (uncaptured epoch), for an MLP
// 784-512-512-10 and a small CNN at batch 128. Run with random interleaving so that the machine's
// noise hits all variants alike (bench/training/run.sh does, and prints the ratios).
#include <benchmark/benchmark.h>

#include <torch/torch.h>

#include <filesystem>
#include <optional>

#include "neuronmap/neuronmap.hpp"

namespace {

struct MlpImpl : torch::nn::Module {
  MlpImpl()
      : fc1(register_module("fc1", torch::nn::Linear(784, 512))),
        fc2(register_module("fc2", torch::nn::Linear(512, 512))),
        fc3(register_module("fc3", torch::nn::Linear(512, 10))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc3(torch::relu(fc2(torch::relu(fc1(x))))); }
  torch::nn::Linear fc1, fc2, fc3;
};
TORCH_MODULE(Mlp);

struct CnnImpl : torch::nn::Module {
  CnnImpl()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 16, 3).padding(1)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).padding(1)))),
        fc1(register_module("fc1", torch::nn::Linear(32 * 8 * 8, 128))),
        fc2(register_module("fc2", torch::nn::Linear(128, 10))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = torch::max_pool2d(torch::relu(conv1(x)), 2);
    h = torch::max_pool2d(torch::relu(conv2(h)), 2);
    return fc2(torch::relu(fc1(h.flatten(1))));
  }
  torch::nn::Conv2d conv1, conv2;
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Cnn);

enum Mode { kPlain = 0, kCaptured = 1, kUncaptured = 2 };

template <typename Net>
void training_step(benchmark::State& state, const std::vector<std::string>& layers, torch::IntArrayRef input_shape) {
  torch::set_num_threads(1);
  torch::manual_seed(0);
  Net net;
  torch::optim::SGD optimizer(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  const auto x = torch::randn(input_shape);
  const auto y = torch::randint(0, 10, {input_shape[0]}, torch::kLong);
  const auto mode = static_cast<Mode>(state.range(0));
  std::optional<neuronmap::Session> session;
  const auto path = (std::filesystem::temp_directory_path() / "neuronmap_bench_training.h5").string();
  if (mode != kPlain) {
    // every(1): the first epoch is captured; every(1000000): the probes stay switched off.
    session.emplace(neuronmap::attach(*net, layers,
                                      neuronmap::Options{}.every(mode == kCaptured ? 1 : 1000000).file(path).overwrite(true)));
  }
  for (auto _ : state) {
    optimizer.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    optimizer.step();
    benchmark::DoNotOptimize(loss.data_ptr());
  }
  if (session) {
    const auto c = session->counters();
    state.counters["captured_batches"] = static_cast<double>(c.captured_batches);
    state.counters["dropped"] = static_cast<double>(c.dropped_batches);
    session->close();
  }
  state.SetLabel(mode == kPlain ? "plain" : mode == kCaptured ? "attached_captured" : "attached_uncaptured");
}

void BM_MlpStep(benchmark::State& state) { training_step<Mlp>(state, {"fc1", "fc2", "fc3"}, {128, 784}); }
void BM_CnnStep(benchmark::State& state) { training_step<Cnn>(state, {"conv1", "conv2", "fc1"}, {128, 3, 32, 32}); }

BENCHMARK(BM_MlpStep)->Arg(kPlain)->Arg(kCaptured)->Arg(kUncaptured)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CnnStep)->Arg(kPlain)->Arg(kCaptured)->Arg(kUncaptured)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
