// A real training process for the fault tests: an MLP trains on random data with probes attached and
// prints what it did, line by line (flushed), so that a parent can kill it, read its file while it
// writes, or measure it.
//   training_child PATH [--epochs N] [--every K] [--steps S] [--batch B] [--width W] [--queue Q]
//                       [--overflow block|drop] [--delay SECONDS] [--flush] [--fsize BYTES] [--pace MS]
// --pace: sleep MS milliseconds after each epoch (a writer that grows its file at a bounded rate).
// --fsize: a file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) after attach, as a full disk.
// Lines: "attached", "epoch <e> step_ms=<mean step of that epoch>" after each end_epoch, with --flush "committed <i>" once snapshot i is
// in the file (a flush after each snapshot epoch), and at the end
// "done captured=<c> dropped=<d> rows=<r> snapshots=<n> hwm_kb=<peak RSS> base_kb=<RSS after attach>
//  step_ms=<mean training step> error=<last_error>".
// The weights and data come from a fixed seed, so two runs with the same arguments write the same
// snapshots (one worker, one intra-op thread).
#include <torch/torch.h>

#include <sys/resource.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "neuronmap/neuronmap.hpp"
#include "session/testing.hpp"

namespace nm = neuronmap;

namespace {

long status_kb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(key) + ":";
  while (std::getline(in, line))
    if (line.rfind(prefix, 0) == 0) return std::atol(line.c_str() + prefix.size());
  return -1;
}

struct NetImpl : torch::nn::Module {
  explicit NetImpl(int width)
      : fc1(register_module("fc1", torch::nn::Linear(32, width))),
        fc2(register_module("fc2", torch::nn::Linear(width, width))),
        head(register_module("head", torch::nn::Linear(width, 10))) {}
  torch::Tensor forward(const torch::Tensor& x) { return head(torch::relu(fc2(torch::relu(fc1(x))))); }
  torch::nn::Linear fc1, fc2, head;
};
TORCH_MODULE(Net);

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PATH [--epochs N] [--every K] [--steps S] [--batch B] [--width W] [--queue Q] "
                         "[--overflow block|drop] [--delay SECONDS] [--flush]\n", argv[0]);
    return 64;
  }
  const std::string path = argv[1];
  long long epochs = 1000000, every = 1, steps = 8, batch = 64, width = 48, queue = 64;
  long long fsize = -1;
  double delay = 0.0;
  long long pace_ms = 0;
  bool flush = false;
  nm::Overflow overflow = nm::Overflow::block;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--epochs" && has_value) epochs = std::atoll(argv[++i]);
    else if (arg == "--every" && has_value) every = std::atoll(argv[++i]);
    else if (arg == "--steps" && has_value) steps = std::atoll(argv[++i]);
    else if (arg == "--batch" && has_value) batch = std::atoll(argv[++i]);
    else if (arg == "--width" && has_value) width = std::atoll(argv[++i]);
    else if (arg == "--queue" && has_value) queue = std::atoll(argv[++i]);
    else if (arg == "--delay" && has_value) delay = std::atof(argv[++i]);
    else if (arg == "--overflow" && has_value) overflow = std::string(argv[++i]) == "drop" ? nm::Overflow::drop_newest : nm::Overflow::block;
    else if (arg == "--fsize" && has_value) fsize = std::atoll(argv[++i]);
    else if (arg == "--pace" && has_value) pace_ms = std::atoll(argv[++i]);
    else if (arg == "--flush") flush = true;
    else {
      std::fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 64;
    }
  }
  at::set_num_threads(1);
  torch::manual_seed(0);
  Net net(static_cast<int>(width));
  torch::optim::SGD optimizer(net->parameters(), 0.01);
  const auto x = torch::randn({batch, 32});
  const auto y = torch::randint(0, 10, {batch});

  // A refused attach (e.g. another live session writes PATH) is reported on stderr, exit code 3.
  auto session = [&]() -> nm::Session {
    try {
      return nm::attach(*net, {"fc1", "fc2", "head"},
                            nm::Options{}
                                .file(path)
                                .overwrite(true)
                                .every(static_cast<int>(every))
                                .queue_capacity(queue)
                                .overflow(overflow)
                                .workers(1)
                                .reservoir_size(64));
    } catch (const nm::Error& e) {
      std::fprintf(stderr, "attach failed: %s\n", e.what());
      std::exit(3);
    }
  }();
  neuronmap::detail::set_worker_delay(session, delay);
  if (fsize >= 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{static_cast<rlim_t>(fsize), static_cast<rlim_t>(fsize)};
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) return 65;
  }
  const long base_kb = status_kb("VmRSS");
  std::printf("attached\n");
  std::fflush(stdout);

  double step_seconds = 0.0;
  long long step_count = 0;
  for (long long epoch = 1; epoch <= epochs; ++epoch) {
    const double epoch_start_seconds = step_seconds;
    for (long long s = 0; s < steps; ++s) {
      const auto start = std::chrono::steady_clock::now();
      optimizer.zero_grad();
      // The same batch, shifted per step: deterministic and cheap.
      const auto loss = torch::nn::functional::cross_entropy(net->forward(x + 0.01 * static_cast<double>(s)), y);
      loss.backward();
      optimizer.step();
      step_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      ++step_count;
    }
    session.end_epoch(epoch, 1.0 / static_cast<double>(epoch));
    std::printf("epoch %lld step_ms=%.4f\n", epoch,
                1000.0 * (step_seconds - epoch_start_seconds) / static_cast<double>(std::max<long long>(steps, 1)));
    if (flush && epoch % every == 0) {
      session.flush();
      std::printf("committed %lld\n", static_cast<long long>(session.snapshots_written() - 1));
    }
    std::fflush(stdout);
    if (pace_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pace_ms));
  }
  session.close();
  const auto c = session.counters();
  std::printf("done captured=%lld dropped=%lld rows=%lld snapshots=%lld hwm_kb=%ld base_kb=%ld step_ms=%.4f error=%s\n",
              static_cast<long long>(c.captured_batches), static_cast<long long>(c.dropped_batches),
              static_cast<long long>(c.rows), static_cast<long long>(session.snapshots_written()), status_kb("VmHWM"),
              base_kb, 1000.0 * step_seconds / static_cast<double>(std::max<long long>(step_count, 1)),
              session.last_error().c_str());
  std::fflush(stdout);
  return 0;
}
