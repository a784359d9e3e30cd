// One training step of a small transformer block with its attention probed (per-head weights and head
// statistics): plain vs attached (captured epoch) vs attached (uncaptured epoch). d_model 256, 4 heads,
// T = 64, batch 16, causal mask. bench/training/run_attention.sh runs it interleaved and prints ratios.
#include <benchmark/benchmark.h>

#include <torch/torch.h>

#include <filesystem>
#include <limits>
#include <optional>

#include "neuronmap/neuronmap.hpp"

namespace {

constexpr std::int64_t kDim = 256, kHeads = 4, kLength = 64, kBatch = 16;

struct Block : torch::nn::Module {
  torch::nn::MultiheadAttention attn{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Linear ff1{nullptr}, ff2{nullptr};
  Block() {
    attn = register_module("attn", torch::nn::MultiheadAttention(kDim, kHeads));
    norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({kDim})));
    norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({kDim})));
    ff1 = register_module("ff1", torch::nn::Linear(kDim, 4 * kDim));
    ff2 = register_module("ff2", torch::nn::Linear(4 * kDim, kDim));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& causal) {
    auto h = norm1(x + std::get<0>(attn->forward(x, x, x, {}, /*need_weights=*/false, causal)));
    return norm2(h + ff2(torch::relu(ff1(h))));
  }
};

enum Mode { kPlain = 0, kCaptured = 1, kUncaptured = 2 };

void BM_AttentionStep(benchmark::State& state) {
  torch::set_num_threads(1);
  torch::manual_seed(0);
  auto net = std::make_shared<Block>();
  torch::optim::Adam optimizer(net->parameters(), torch::optim::AdamOptions(1e-3));
  const auto x = torch::randn({kLength, kBatch, kDim});
  const auto y = torch::randn({kLength, kBatch, kDim});
  const auto causal = torch::triu(torch::full({kLength, kLength}, -std::numeric_limits<float>::infinity()), 1);
  const auto mode = static_cast<Mode>(state.range(0));
  std::optional<neuronmap::Session> session;
  const auto path = (std::filesystem::temp_directory_path() / "neuronmap_bench_attention.h5").string();
  if (mode != kPlain) {
    session.emplace(neuronmap::attach(*net, {"attn"},
                                      neuronmap::Options{}.every(mode == kCaptured ? 1 : 1000000).file(path).overwrite(true)));
  }
  for (auto _ : state) {
    optimizer.zero_grad();
    auto loss = torch::mse_loss(net->forward(x, causal), y);
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

BENCHMARK(BM_AttentionStep)->Arg(kPlain)->Arg(kCaptured)->Arg(kUncaptured)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
