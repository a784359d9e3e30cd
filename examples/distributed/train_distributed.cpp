// Data-parallel training on c10d with a NeuronMap session per rank (docs/DISTRIBUTED.md).
// LibTorch 1.13 has no C++ DistributedDataParallel, so each step all-reduces the gradients by hand
// through the same Gloo process group that NeuronMap uses at its snapshots.
//
//   neuronmap_distributed_example [--world 2] [--epochs 10] [--out outputs/distributed.h5]
//       starts `world` copies of itself on this machine (a FileStore in a temporary directory);
//   neuronmap_distributed_example --rank R --world W --master HOST:PORT [--out ...]
//       one rank of a group spread over machines (a TCPStore; rank 0 serves it at HOST:PORT).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <neuronmap/distributed.hpp>
#include <neuronmap/neuronmap.hpp>

namespace {

std::string arg(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == name) return argv[i + 1];
  return fallback;
}

struct Net : torch::nn::Module {
  Net() {
    fc1 = register_module("fc1", torch::nn::Linear(20, 64));
    fc2 = register_module("fc2", torch::nn::Linear(64, 32));
    out = register_module("out", torch::nn::Linear(32, 4));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(fc1->forward(x));
    x = torch::relu(fc2->forward(x));
    return out->forward(x);
  }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, out{nullptr};
};

// Starts `world` ranks of this program with a FileStore in a fresh temporary directory; waits for them.
int launch(const char* self, int world, int argc, char** argv) {
  const auto dir = std::filesystem::temp_directory_path() / ("neuronmap-dist-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    // The arguments are built before fork(): a forked child should only exec.
    std::vector<std::string> args{self, "--rank", std::to_string(rank), "--world", std::to_string(world),
                                  "--store", (dir / "store").string()};
    for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
    std::vector<char*> c_args;
    for (auto& a : args) c_args.push_back(a.data());
    c_args.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::execv("/proc/self/exe", c_args.data());
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  int failed = 0;
  for (const pid_t pid : pids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  std::filesystem::remove_all(dir);
  return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const int world = std::stoi(arg(argc, argv, "--world", "2"));
  const std::string rank_arg = arg(argc, argv, "--rank", "");
  if (rank_arg.empty()) return launch(argv[0], world, argc, argv);
  const int rank = std::stoi(rank_arg);
  const int epochs = std::stoi(arg(argc, argv, "--epochs", "10"));
  const std::string out = arg(argc, argv, "--out", "outputs/distributed.h5");
  at::set_num_threads(1);

  // The process group: a FileStore on one machine, a TCPStore across machines.
  c10::intrusive_ptr<c10d::Store> store;
  const std::string master = arg(argc, argv, "--master", "");
  if (master.empty()) {
    store = c10::make_intrusive<c10d::FileStore>(arg(argc, argv, "--store", "store"), world);
  } else {
    c10d::TCPStoreOptions tcp;
    tcp.port = static_cast<std::uint16_t>(std::stoi(master.substr(master.rfind(':') + 1)));
    tcp.isServer = rank == 0;
    tcp.numWorkers = world;
    store = c10::make_intrusive<c10d::TCPStore>(master.substr(0, master.rfind(':')), tcp);
  }
  auto gloo_options = c10d::ProcessGroupGloo::Options::create(std::chrono::seconds(30));
  // Loopback on one machine; across machines the interface that the host name resolves to.
  gloo_options->devices.push_back(master.empty() ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                                 : c10d::ProcessGroupGloo::createDefaultDevice());
  auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, gloo_options);

  // The same initial weights on every rank (as DDP broadcasts them), then a shard of the data each.
  torch::manual_seed(0);
  auto model = std::make_shared<Net>();
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  torch::manual_seed(1);
  const auto inputs = torch::randn({4096, 20});
  const auto labels = (inputs.slice(1, 0, 4).argmax(1) + (inputs.slice(1, 4, 5).squeeze(1) > 1).to(torch::kLong)) % 4;
  const int64_t batch = 64, batches = inputs.size(0) / batch;

  // Every rank attaches with the same options; only rank 0 writes `out`.
  auto session = neuronmap::attach(*model, {"fc1", "fc2"},
                                   neuronmap::Options{}.every(2).file(out).overwrite(true).process_group(group));

  double snapshot_ms = 0.0, other_ms = 0.0;  // the longest end_epoch, with and without a snapshot
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    double loss_sum = 0.0;
    int64_t steps = 0;
    for (int64_t b = rank; b < batches; b += world) {  // DistributedSampler's interleaving
      const auto x = inputs.slice(0, b * batch, (b + 1) * batch);
      const auto y = labels.slice(0, b * batch, (b + 1) * batch);
      optimizer.zero_grad();
      const auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
      loss.backward();
      // DDP by hand: the mean gradient over the ranks, so the replicas stay identical.
      std::vector<at::Tensor> grads;
      for (auto& p : model->parameters()) grads.push_back(p.grad());
      group->allreduce_coalesced(grads)->wait();
      for (auto& g : grads) g.div_(world);
      optimizer.step();
      loss_sum += loss.item<double>();
      ++steps;
    }
    // Every rank passes its own mean loss; the snapshot records the mean over the ranks.
    const auto before = std::chrono::steady_clock::now();
    session.end_epoch(epoch, loss_sum / static_cast<double>(steps));
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - before).count();
    (epoch % 2 == 0 ? snapshot_ms : other_ms) = std::max(epoch % 2 == 0 ? snapshot_ms : other_ms, ms);
    if (rank == 0) std::cout << "epoch " << epoch << " loss " << loss_sum / static_cast<double>(steps) << std::endl;
  }
  session.close();
  std::cout << "rank " << rank << ": longest end_epoch " << snapshot_ms << " ms at a snapshot epoch (drain, merge, "
            << "gather), " << other_ms << " ms otherwise" << std::endl;
  if (!session.last_error().empty()) std::cerr << "rank " << rank << ": " << session.last_error() << "\n";
  if (rank == 0) {
    const auto run = neuronmap::Run::open(out);
    for (std::int64_t i = 0; i < run.size(); ++i) {
      const auto s = run.summary(i);
      std::cout << "snapshot epoch " << s.epoch << ":";
      for (const auto& l : s.layers) std::cout << " " << l.name << " " << l.samples << " samples, " << l.groups << " groups;";
      std::cout << "\n";
    }
    std::cout << "wrote " << out << " (" << run.size() << " snapshots over " << world << " ranks)\n";
  }
  return session.last_error().empty() ? 0 : 1;
}
