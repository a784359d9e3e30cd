// Plain vs one attached variant, measured in pairs of blocks: one process holds both networks (same
// seed, same data) and times a block of steps of each in turn, the order random per pair. Each pair
// gives a ratio of two blocks run within a fraction of a second of each other, so the speed drift of
// a shared VM (5-10% between Google Benchmark repetitions here) cancels; the median over pairs and a
// bootstrap 90% interval over pairs are printed. The control `--variant plain` times two plain networks
// against each other: its interval is the precision of the run.
//
// Bias, known and small: while the attached network's probes are enabled, LibTorch's op callbacks also
// run for the plain network's ops (the callback is process-wide; ~0.3 us per op, tests/probe/
// probe_overhead_bench), which makes plain slower by that much and the ratio lower.
//
// Usage: bench_paired_step --model mlp|cnn|mnist|script-mlp|script-cnn --variant NAME [--pairs P] [--steps S]
//   variants: plain, captured, uncaptured, float32, budget, callbacks, on_device, products
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../torchscript/script_models.hpp"
#include "models.hpp"
#include "neuronmap/torchscript.hpp"

namespace {

using namespace bench;
using Clock = std::chrono::steady_clock;

// One network with its optimizer and data; step() is one training step (MNIST: and its eval pass).
struct Workload {
  std::function<neuronmap::Session(const neuronmap::Options&)> attach;
  std::vector<std::int64_t> co_runner_widths;
  std::int64_t batch = 0;
  std::function<void()> step;
};

template <typename Net>
Workload classifier(std::vector<std::string> layers, std::vector<std::int64_t> input_shape, double momentum,
                    std::vector<std::int64_t> co_runner_widths = {}) {
  torch::manual_seed(0);
  Net net;
  auto optimizer = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.01).momentum(momentum));
  const auto x = torch::randn(input_shape);
  const auto y = torch::randint(0, 10, {input_shape[0]}, torch::kLong);
  Workload w;
  w.attach = [net, layers](const neuronmap::Options& o) mutable { return neuronmap::attach(*net, layers, o); };
  w.co_runner_widths = std::move(co_runner_widths);
  w.batch = input_shape[0];
  w.step = [net, optimizer, x, y]() mutable {
    optimizer->zero_grad();
    auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    optimizer->step();
  };
  return w;
}

Workload mnist() {
  torch::manual_seed(0);
  Mnist net;
  auto optimizer = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.5));
  const auto x = torch::randn({64, 1, 28, 28});
  const auto y = torch::randint(0, 10, {64}, torch::kLong);
  const auto test_x = torch::randn({1000, 1, 28, 28});
  Workload w;
  w.attach = [net](const neuronmap::Options& o) mutable { return neuronmap::attach(*net, {"conv1", "conv2", "fc1", "fc2"}, o); };
  w.batch = 64;
  w.step = [net, optimizer, x, y, test_x]() mutable {
    net->train();
    optimizer->zero_grad();
    auto loss = torch::nll_loss(net->forward(x), y);
    loss.backward();
    optimizer->step();
    net->eval();
    torch::NoGradGuard no_grad;
    net->forward(test_x);
  };
  return w;
}

// The same networks as TorchScript modules (bench/torchscript), probed by the graph op the SDK inserts.
Workload scripted(torch::jit::Module net, std::vector<std::string> layers, std::vector<std::int64_t> input_shape) {
  torch::manual_seed(0);
  auto module = std::make_shared<torch::jit::Module>(std::move(net));
  std::vector<at::Tensor> params;
  for (const auto& p : module->parameters()) params.push_back(p);
  auto optimizer = std::make_shared<torch::optim::SGD>(params, torch::optim::SGDOptions(0.01).momentum(0.9));
  const auto x = torch::randn(input_shape);
  const auto y = torch::randint(0, 10, {input_shape[0]}, torch::kLong);
  Workload w;
  w.attach = [module, layers](const neuronmap::Options& o) mutable { return neuronmap::attach(*module, layers, o); };
  w.batch = input_shape[0];
  w.step = [module, optimizer, x, y]() mutable {
    optimizer->zero_grad();
    auto loss = torch::nn::functional::cross_entropy(module->forward({x}).toTensor(), y);
    loss.backward();
    optimizer->step();
  };
  return w;
}

Workload make_workload(const std::string& model) {
  if (model == "mlp") return classifier<Mlp>({"fc1", "fc2", "fc3"}, {128, 784}, 0.9, {512, 512, 10});
  if (model == "cnn") return classifier<Cnn>({"conv1", "conv2", "fc1"}, {128, 3, 32, 32}, 0.9);
  if (model == "mnist") return mnist();
  if (model == "script-mlp") return scripted(bench_script::make_mlp(), {"fc1", "fc2", "fc3"}, {128, 784});
  if (model == "script-cnn") return scripted(bench_script::make_cnn(), {"conv1", "conv2", "fc1"}, {128, 3, 32, 32});
  throw std::invalid_argument("--model wants mlp, cnn, mnist, script-mlp or script-cnn, got '" + model + "'");
}

const std::map<std::string, Mode>& variants() {
  static const std::map<std::string, Mode> v = {
      {"plain", kPlain},        {"captured", kCaptured},         {"uncaptured", kUncaptured},
      {"float32", kCapturedFloat32}, {"budget", kCapturedBudget5}, {"callbacks", kCallbacksOnly},
      {"on_device", kCapturedOnDevice}, {"products", kPlainCoRunner}};
  return v;
}

double block_ms(const Workload& w, int steps, CoRunner* co_runner) {
  const auto start = Clock::now();
  for (int i = 0; i < steps; ++i) {
    w.step();
    if (co_runner != nullptr) co_runner->step();
  }
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Untimed, before the next block: until the workers have taken every queued batch (the rows they
// added stop changing for 5 ms), so that their backlog does not run inside the plain block.
void let_workers_finish(const neuronmap::Session& session) {
  auto last = session.counters();
  int quiet = 0;
  for (int polls = 0; quiet < 5 && polls < 20000; ++polls) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const auto now = session.counters();
    quiet = now.rows + now.nonfinite_rows == last.rows + last.nonfinite_rows ? quiet + 1 : 0;
    last = now;
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const auto n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int int_arg(const char* flag, const char* text) {
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < 1 || value > 100000) throw std::invalid_argument(std::string(flag) + " wants a positive integer");
  return static_cast<int>(value);
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "mlp", variant = "captured";
  int pairs = 40, steps = 25;
  try {
    for (int i = 1; i + 1 < argc; i += 2) {
      const std::string flag = argv[i];
      if (flag == "--model") {
        model = argv[i + 1];
      } else if (flag == "--variant") {
        variant = argv[i + 1];
      } else if (flag == "--pairs") {
        pairs = int_arg("--pairs", argv[i + 1]);
      } else if (flag == "--steps") {
        steps = int_arg("--steps", argv[i + 1]);
      } else {
        throw std::invalid_argument("unknown argument '" + flag + "'");
      }
    }
    if (argc % 2 == 0) throw std::invalid_argument("every flag wants a value");
    if (variants().count(variant) == 0) throw std::invalid_argument("unknown --variant '" + variant + "'");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_paired_step: %s\nusage: bench_paired_step --model mlp|cnn|mnist|script-mlp|script-cnn --variant "
                         "plain|captured|uncaptured|float32|budget|callbacks|on_device|products [--pairs P] [--steps S]\n",
                 e.what());
    return 2;
  }
  torch::set_num_threads(1);
  const Mode mode = variants().at(variant);
  const Workload plain = make_workload(model);
  const Workload other = make_workload(model);
  std::optional<neuronmap::Session> session;
  std::optional<CoRunner> co_runner;
  const auto path = (std::filesystem::temp_directory_path() / "neuronmap_bench_paired.h5").string();
  if (mode == kPlainCoRunner) {
    if (other.co_runner_widths.empty()) {
      std::fprintf(stderr, "bench_paired_step: --variant products is defined for --model mlp only\n");
      return 2;
    }
    co_runner.emplace(other.co_runner_widths, other.batch);
  } else if (mode != kPlain) {
    session.emplace(other.attach(mode_options(mode, path)));
  }

  std::mt19937 order(2026);
  std::vector<double> ratios, plain_ms, other_ms;
  for (int pair = -2; pair < pairs; ++pair) {  // two pairs of warm-up
    const bool plain_first = order() % 2 == 0;
    double p = 0, o = 0;
    for (int half = 0; half < 2; ++half) {
      if ((half == 0) == plain_first) {
        p = block_ms(plain, steps, nullptr);
      } else {
        o = block_ms(other, steps, co_runner ? &*co_runner : nullptr);
        if (session) let_workers_finish(*session);
      }
    }
    if (pair < 0) continue;
    ratios.push_back(o / p);
    plain_ms.push_back(p / steps);
    other_ms.push_back(o / steps);
  }
  std::mt19937 resample(7);
  std::vector<double> medians;
  for (int b = 0; b < 2000; ++b) {
    std::vector<double> draw;
    for (std::size_t i = 0; i < ratios.size(); ++i) draw.push_back(ratios[resample() % ratios.size()]);
    medians.push_back(median(draw));
  }
  std::sort(medians.begin(), medians.end());
  std::printf("%s %s: plain %.2f ms/step, %s %.2f ms/step; %s / plain per pair: median %.3f [90%%: %.3f-%.3f], "
              "%d pairs of %d-step blocks",
              model.c_str(), variant.c_str(), median(plain_ms), variant.c_str(), median(other_ms), variant.c_str(),
              median(ratios), medians[100], medians[1899], pairs, steps);
  if (session) {
    const auto c = session->counters();
    std::printf("; batches: %lld captured, %lld dropped, %lld left out by the budget",
                static_cast<long long>(c.captured_batches - c.budget_skipped_batches - c.skipped_batches - c.dropped_batches),
                static_cast<long long>(c.dropped_batches), static_cast<long long>(c.budget_skipped_batches));
    session->close();
  }
  std::printf("\n");
  return 0;
}
