// A wide row: a transformer-like stack (d_model 1024, 8 blocks, T = 128, B = 8; one row per token, so
// 1,024 rows of 1,024 neurons per probed layer and step), 4 probed Linear layers. One training step
// plain vs captured (default Options: exact float64, every batch) vs captured with
// overhead_budget(0.05). bench/training/run_wide_row.sh prints the ratios.
#include <benchmark/benchmark.h>

#include <torch/torch.h>

#include <filesystem>
#include <optional>

#include "neuronmap/neuronmap.hpp"

namespace {

constexpr std::int64_t kModel = 1024, kHeads = 8, kBlocks = 8, kTokens = 128, kBatch = 8;

struct BlockImpl : torch::nn::Module {
  BlockImpl()
      : norm1(register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({kModel})))),
        qkv(register_module("qkv", torch::nn::Linear(kModel, 3 * kModel))),
        proj(register_module("proj", torch::nn::Linear(kModel, kModel))),
        norm2(register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({kModel})))),
        up(register_module("up", torch::nn::Linear(kModel, 4 * kModel))),
        down(register_module("down", torch::nn::Linear(4 * kModel, kModel))) {}
  torch::Tensor forward(torch::Tensor x) {  // [B, T, D]
    const auto parts = qkv(norm1(x)).view({kBatch, kTokens, 3, kHeads, kModel / kHeads}).permute({2, 0, 3, 1, 4});
    auto scores = torch::matmul(parts[0], parts[1].transpose(-2, -1)) / std::sqrt(static_cast<double>(kModel / kHeads));
    const auto mask = torch::ones({kTokens, kTokens}, torch::kBool).triu(1);
    scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
    const auto attended = torch::matmul(torch::softmax(scores, -1), parts[2]).transpose(1, 2).reshape({kBatch, kTokens, kModel});
    x = x + proj(attended);
    return x + down(torch::gelu(up(norm2(x))));
  }
  torch::nn::LayerNorm norm1;
  torch::nn::Linear qkv, proj;
  torch::nn::LayerNorm norm2;
  torch::nn::Linear up, down;
};
TORCH_MODULE(Block);

struct StackImpl : torch::nn::Module {
  StackImpl() : blocks(register_module("blocks", torch::nn::ModuleList())), head(register_module("head", torch::nn::Linear(kModel, 16))) {
    for (int b = 0; b < kBlocks; ++b) blocks->push_back(Block());
  }
  torch::Tensor forward(torch::Tensor x) {
    for (const auto& block : *blocks) x = block->as<Block>()->forward(x);
    return head(x);
  }
  torch::nn::ModuleList blocks;
  torch::nn::Linear head;
};
TORCH_MODULE(Stack);

enum Mode { kPlain = 0, kCaptured = 1, kCapturedBudget5 = 2 };

void BM_WideRowStep(benchmark::State& state) {
  torch::set_num_threads(1);
  torch::manual_seed(0);
  Stack net;
  torch::optim::SGD optimizer(net->parameters(), torch::optim::SGDOptions(0.001));
  const auto x = torch::randn({kBatch, kTokens, kModel});
  const auto y = torch::randn({kBatch, kTokens, 16});
  const auto mode = static_cast<Mode>(state.range(0));
  std::optional<neuronmap::Session> session;
  if (mode != kPlain) {
    auto options = neuronmap::Options{}.every(1).file((std::filesystem::temp_directory_path() / "neuronmap_bench_wide.h5").string()).overwrite(true);
    if (mode == kCapturedBudget5) options.overhead_budget(0.05);
    session.emplace(neuronmap::attach(*net, {"blocks.1.proj", "blocks.3.proj", "blocks.5.proj", "blocks.7.proj"}, options));
  }
  for (auto _ : state) {
    optimizer.zero_grad();
    auto loss = torch::mse_loss(net->forward(x), y);
    loss.backward();
    optimizer.step();
    benchmark::DoNotOptimize(loss.data_ptr());
  }
  if (session) {
    const auto c = session->counters();
    state.counters["captured_rows"] = static_cast<double>(c.rows);
    state.counters["budget_skipped"] = static_cast<double>(c.budget_skipped_batches);
    session->close();
  }
  state.SetLabel(mode == kPlain ? "plain" : mode == kCaptured ? "attached_captured" : "attached_captured_budget_0.05");
}

}  // namespace

BENCHMARK(BM_WideRowStep)->Arg(kPlain)->Arg(kCaptured)->Arg(kCapturedBudget5)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
