// One rank of the distributed tests, or (--world 0) the single-process reference over the same data.
// The data: G fixed batches per epoch; rank r of W takes batches r, r + W, r + 2W, ... (DistributedSampler's
// interleaving), so the union over the ranks is exactly what the reference sees. The model's weights
// stay fixed (forward only), so every process computes bit-identical activations for a batch.
//
//   distributed_child --out FILE [--world W --rank R --store DIR] [--epochs E] [--every K]
//                     [--die-rank R --die-epoch E] [--timeout-ms T]
// Prints the longest end_epoch, then "snapshots=<n> error=<last_error>", at the end.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include "neuronmap/distributed.hpp"
#include "neuronmap/session.hpp"

namespace {

constexpr int kBatches = 8;  // per epoch, over all ranks (divisible by 1, 2 and 4)
constexpr int kBatchSize = 32;
constexpr int kInputs = 12;

std::string arg(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == name) return argv[i + 1];
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string out = arg(argc, argv, "--out", "");
  const int world = std::stoi(arg(argc, argv, "--world", "0"));
  const int rank = std::stoi(arg(argc, argv, "--rank", "0"));
  const std::string store_path = arg(argc, argv, "--store", "");
  const int epochs = std::stoi(arg(argc, argv, "--epochs", "4"));
  const int every = std::stoi(arg(argc, argv, "--every", "2"));
  const int die_rank = std::stoi(arg(argc, argv, "--die-rank", "-1"));
  const int die_epoch = std::stoi(arg(argc, argv, "--die-epoch", "-1"));
  const int timeout_ms = std::stoi(arg(argc, argv, "--timeout-ms", "20000"));
  at::set_num_threads(1);

  // Three latent factors mixed into 12 inputs: the hidden layer's neurons form correlated groups.
  torch::manual_seed(7);
  const auto latent = torch::randn({kBatches, kBatchSize, 3});
  const auto mixing = torch::randn({3, kInputs});
  const auto data = torch::matmul(latent, mixing) + 0.3 * torch::randn({kBatches, kBatchSize, kInputs});
  torch::nn::Sequential model(torch::nn::Linear(kInputs, 24), torch::nn::Tanh(), torch::nn::Linear(24, 6));

  auto options = neuronmap::Options{}.every(every).file(out).overwrite(true).reservoir_size(100).threshold(0.5)
                     .tag_names({"a", "b", "c"});
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  if (world > 0) {
    auto store = c10::make_intrusive<c10d::FileStore>(store_path, world);
    auto gloo = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(timeout_ms));
    gloo->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, gloo);
    options.process_group(group);
  }
  auto session = neuronmap::attach(*model, {"0", "1", "2"}, options);

  torch::NoGradGuard no_grad;
  double longest_ms = 0.0;  // the longest end_epoch: a failed collective must not hang it
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    double loss_sum = 0.0;
    int batches = 0;
    for (int k = 0; k < kBatches; ++k) {
      if (world > 0 && k % world != rank) continue;
      const auto x = data[k] * (1.0 + 0.1 * epoch);
      const auto y = model->forward(x);
      const auto per_sample = y.pow(2).mean(1);
      std::vector<std::int32_t> tags;
      for (int i = 0; i < kBatchSize; ++i) tags.push_back((k * kBatchSize + i) % 3);
      session.observe(per_sample, tags);
      loss_sum += per_sample.mean().item<double>();
      ++batches;
    }
    if (rank == die_rank && epoch == die_epoch) {
      std::cout << "dying at epoch " << epoch << std::endl;
      ::_exit(3);  // before this epoch's snapshot collective
    }
    const auto before = std::chrono::steady_clock::now();
    session.end_epoch(epoch, loss_sum / batches);
    longest_ms = std::max(longest_ms,
                          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - before).count());
  }
  session.flush();
  const auto written = session.snapshots_written();
  const auto error = session.last_error();
  session.close();
  std::cout << "longest end_epoch " << longest_ms << " ms\n";
  std::cout << "snapshots=" << written << " error=" << error << std::endl;
  return 0;
}
