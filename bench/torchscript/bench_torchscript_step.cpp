// One training step of TorchScript models (built with Module::define, the same MLP 784-512-512-10
// and small CNN as bench/training), plain vs attached (captured epoch) vs attached (uncaptured epoch)
// vs after the session ended (graphs and original methods restored, compiled afresh).
// bench/torchscript/run.sh prints ratios.
#include <benchmark/benchmark.h>

#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>
#include <optional>

#include "script_models.hpp"

#include "neuronmap/neuronmap.hpp"
#include "neuronmap/torchscript.hpp"

namespace {

using namespace bench_script;

enum Mode { kPlain = 0, kCaptured = 1, kUncaptured = 2, kDetached = 3 };

void training_step(benchmark::State& state, torch::jit::Module net, const std::vector<std::string>& layers,
                   torch::IntArrayRef input_shape) {
  torch::set_num_threads(1);
  torch::manual_seed(0);
  std::vector<at::Tensor> params;
  for (const auto& p : net.parameters()) params.push_back(p);
  torch::optim::SGD optimizer(params, torch::optim::SGDOptions(0.01).momentum(0.9));
  const auto x = torch::randn(input_shape);
  const auto y = torch::randint(0, 10, {input_shape[0]}, torch::kLong);
  const auto mode = static_cast<Mode>(state.range(0));
  std::optional<neuronmap::Session> session;
  const auto path = (std::filesystem::temp_directory_path() / "neuronmap_bench_torchscript.h5").string();
  if (mode != kPlain) {
    // every(1): the first epoch is captured; every(1000000): the probes stay switched off.
    session.emplace(neuronmap::attach(net, layers,
                                      neuronmap::Options{}.every(mode == kCaptured ? 1 : 1000000).file(path).overwrite(true)));
  }
  auto step = [&] {
    optimizer.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(net.forward({x}).toTensor(), y);
    loss.backward();
    optimizer.step();
    return loss;
  };
  if (mode == kDetached) {
    for (int i = 0; i < 3; ++i) step();  // compiled with the probes in, then detached
    session.reset();
  }
  // The executor profiles and compiles on the first runs: time the steady state only.
  for (int i = 0; i < 3; ++i) step();
  for (auto _ : state) {
    auto loss = step();
    benchmark::DoNotOptimize(loss.data_ptr());
  }
  if (session) {
    const auto c = session->counters();
    state.counters["captured_batches"] = static_cast<double>(c.captured_batches);
    state.counters["dropped"] = static_cast<double>(c.dropped_batches);
    session->close();
  }
  state.SetLabel(mode == kPlain ? "plain" : mode == kCaptured ? "attached_captured"
                                        : mode == kUncaptured ? "attached_uncaptured" : "detached");
}

void BM_ScriptMlpStep(benchmark::State& state) { training_step(state, make_mlp(), {"fc1", "fc2", "fc3"}, {128, 784}); }
void BM_ScriptCnnStep(benchmark::State& state) {
  training_step(state, make_cnn(), {"conv1", "conv2", "fc1"}, {128, 3, 32, 32});
}

BENCHMARK(BM_ScriptMlpStep)->DenseRange(kPlain, kDetached)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ScriptCnnStep)->DenseRange(kPlain, kDetached)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
