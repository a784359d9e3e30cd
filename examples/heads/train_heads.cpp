// A small transformer layer trained on a synthetic task that plants a known head behaviour, with its
// attention heads probed; the run file shows them (docs/HEADS.md).
//
//   neuronmap_heads_demo [RUN.h5] [EPOCHS] [--task previous|majority] [--check]
//
// --task previous (default): predict the token at i - 1, which plants previous-token heads.
// --task majority: predict whether most tokens of the prefix 0..i are small (< vocab / 2), a
//   bag-of-tokens target that every prefix position serves equally: it plants uniform heads.
// d_model 64, 4 heads, T = 24, causal mask, Adam 3e-3, EPOCHS (default 6) x 40 batches of 32, a
// snapshot every epoch. At the end it prints each head's role at the last snapshot and the heads'
// groups (redundant heads); with --check it exits 1 unless a head of the planted role was found.
#include <torch/torch.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

#include "neuronmap/neuronmap.hpp"

namespace {

constexpr std::int64_t kVocab = 16, kDim = 64, kHeads = 4, kLength = 24, kBatch = 32, kBatches = 40;

struct AttentionLayer : torch::nn::Module {
  torch::nn::Embedding tokens{nullptr}, positions{nullptr};
  torch::nn::MultiheadAttention attn{nullptr};
  torch::nn::Linear out{nullptr};
  AttentionLayer() {
    tokens = register_module("tokens", torch::nn::Embedding(kVocab, kDim));
    positions = register_module("positions", torch::nn::Embedding(kLength, kDim));
    attn = register_module("attn", torch::nn::MultiheadAttention(kDim, kHeads));
    out = register_module("out", torch::nn::Linear(kDim, kVocab));
  }
  // x: [T, B] token ids -> [T, B, vocab] logits.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& causal) {
    auto h = tokens(x) + positions(torch::arange(x.size(0))).unsqueeze(1);
    auto a = std::get<0>(attn->forward(h, h, h, /*key_padding_mask=*/{}, /*need_weights=*/false, causal));
    return out(a);
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string path = "outputs/heads/run.h5";
  int epochs = 6;
  bool check = false;
  bool majority = false;
  int positional = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--check") {
      check = true;
    } else if (arg == "--task") {
      const std::string task = i + 1 < argc ? argv[++i] : "";
      if (task != "previous" && task != "majority") {
        std::cerr << "unknown task '" << task << "' (previous, majority)\n";
        return 2;
      }
      majority = task == "majority";
    } else if (positional++ == 0) path = arg;
    else epochs = std::atoi(arg.c_str());
  }
  torch::manual_seed(0);
  at::set_num_threads(1);
  auto model = std::make_shared<AttentionLayer>();
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(3e-3));
  const auto causal = torch::triu(torch::full({kLength, kLength}, -std::numeric_limits<float>::infinity()), 1);
  {
    auto session = neuronmap::attach(*model, {"attn"}, neuronmap::Options{}.every(1).file(path).overwrite(true));
    for (int epoch = 1; epoch <= epochs; ++epoch) {
      double total = 0;
      for (int b = 0; b < kBatches; ++b) {
        const auto x = torch::randint(kVocab, {kLength, kBatch});
        const auto logits = model->forward(x, causal);
        torch::Tensor loss;
        if (majority) {
          // Target at position i: 1 when more than half of the tokens 0..i are small, else 0.
          const auto small = (x < kVocab / 2).to(torch::kLong).cumsum(0);
          const auto length = torch::arange(1, kLength + 1).unsqueeze(1);
          const auto target = (2 * small > length).to(torch::kLong);
          loss = torch::nn::functional::cross_entropy(logits.reshape({-1, kVocab}), target.reshape({-1}));
        } else {
          // Target at position i: the token at i - 1 (position 0 has none and is left out of the loss).
          loss = torch::nn::functional::cross_entropy(logits.slice(0, 1).reshape({-1, kVocab}),
                                                      x.slice(0, 0, kLength - 1).reshape({-1}));
        }
        optimizer.zero_grad();
        loss.backward();
        optimizer.step();
        total += loss.item<double>();
      }
      session.end_epoch(epoch, total / kBatches);
      std::cout << "epoch " << epoch << "  loss " << total / kBatches << "\n";
    }
  }
  const auto run = neuronmap::Run::open(path);
  if (run.size() == 0) {
    std::cerr << "no snapshot written\n";
    return 1;
  }
  const auto last = run.snapshot(run.size() - 1);
  const auto& layer = last.layers.at(0);
  const std::string planted = majority ? "uniform" : "previous-token";
  int found = 0;
  std::map<int, std::string> groups;
  std::cout << "\nheads of '" << layer.name << "' at epoch " << last.epoch << ":\n";
  for (std::size_t h = 0; h < layer.heads.size(); ++h) {
    const auto& s = layer.heads[h];
    const int group = h < layer.labels.size() ? layer.labels[h] : -1;
    std::cout << "  head " << h << ": " << s.role << " (weight on i-1 " << s.previous_token() << ", entropy "
              << s.entropy_mean << ", mean distance " << s.distance_mean << "), group "
              << (group < 0 ? std::string("-") : std::to_string(group)) << "\n";
    found += s.role == planted;
    if (group >= 0) groups[group] += (groups[group].empty() ? "" : ", ") + std::to_string(h);
  }
  for (const auto& [group, members] : groups) std::cout << "  redundant heads (group " << group << "): " << members << "\n";
  std::cout << found << " " << planted << " head(s); neuronmap heads " << path << " shows every snapshot\n";
  return check && found == 0 ? 1 : 0;
}
