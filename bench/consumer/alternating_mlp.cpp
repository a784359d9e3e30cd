// Trains a plain and an attached MLP 784-512-512-10 in one process, in alternating blocks of steps, and
// prints attached / plain step time: the issue #15 figure from a consumer of the installed SDK.
#include <dlfcn.h>

#include <neuronmap/neuronmap.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::int64_t kBatch = 128;
constexpr unsigned kOrderSeed = 2026;  // fixed, so that two runs interleave the same way

// The model, data and optimizer of bench/training/bench_training_step.cpp (BM_MlpStep), so that the
// ratios here and there measure the same step.
struct MlpImpl : torch::nn::Module {
  MlpImpl()
      : fc1(register_module("fc1", torch::nn::Linear(784, 512))),
        fc2(register_module("fc2", torch::nn::Linear(512, 512))),
        fc3(register_module("fc3", torch::nn::Linear(512, 10))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc3(torch::relu(fc2(torch::relu(fc1(x))))); }
  torch::nn::Linear fc1, fc2, fc3;
};
TORCH_MODULE(Mlp);

// Both networks start from the same seed, so they hold the same weights.
Mlp seeded_mlp() {
  torch::manual_seed(0);
  return Mlp();
}

struct Trainer {
  Mlp net = seeded_mlp();
  torch::optim::SGD optimizer{net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9)};

  // Runs `steps` training steps; returns the wall time in ms and leaves the last loss in `last_loss`.
  double block(const torch::Tensor& x, const torch::Tensor& y, int steps, double& last_loss) {
    torch::Tensor loss;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) {
      optimizer.zero_grad();
      loss = torch::nn::functional::cross_entropy(net->forward(x), y);
      loss.backward();
      optimizer.step();
    }
    const std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;
    last_loss = loss.item<double>();
    return elapsed.count();
  }
};

struct Args {
  int blocks = 40;
  int steps = 25;
  int openblas_threads = 1;
  std::string file = (std::filesystem::temp_directory_path() / "neuronmap_alternating_mlp.h5").string();
  std::string json;
};

const char* const kUsage =
    "usage: alternating_mlp [--blocks B] [--steps S] [--openblas-threads N] [--file RUN.h5] [--json FILE]\n"
    "  --blocks B            timed blocks in all, B/2 plain and B/2 attached, B even (default 40)\n"
    "  --steps S             training steps per block (default 25)\n"
    "  --openblas-threads N  set the process's OpenBLAS to N threads; 0 leaves it as it is (default 1)\n"
    "  --file RUN.h5         the attached session's run file (default: in the temp directory)\n"
    "  --json FILE           also write the figures as JSON\n";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

int parse_int(const std::string& flag, const std::string& text, int min) {
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < min || value > 1000000) {
    throw UsageError(flag + " wants an integer >= " + std::to_string(min) + ", got '" + text + "'");
  }
  return static_cast<int>(value);
}

Args parse_args(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    const bool known = flag == "--blocks" || flag == "--steps" || flag == "--openblas-threads" || flag == "--file" ||
                       flag == "--json";
    if (!known) throw UsageError("unknown argument '" + flag + "'");
    if (i + 1 >= argc) throw UsageError(flag + " wants a value");
    const std::string value = argv[++i];
    if (flag == "--blocks") {
      args.blocks = parse_int(flag, value, 2);
    } else if (flag == "--steps") {
      args.steps = parse_int(flag, value, 1);
    } else if (flag == "--openblas-threads") {
      args.openblas_threads = parse_int(flag, value, 0);
    } else if (flag == "--file") {
      args.file = value;
    } else {
      args.json = value;
    }
  }
  if (args.blocks % 2 != 0) throw UsageError("--blocks must be even: each pair is one plain and one attached block");
  return args;
}

// torch::set_num_threads(1) sets LibTorch's own pool only: Debian's LibTorch runs its matrix products
// on OpenBLAS, whose threads (one per core) it does not reach (docs/PERFORMANCE.md). The SDK's workers
// use a private serial OpenBLAS in a link namespace of their own, which RTLD_DEFAULT does not see.
std::string limit_openblas(int threads) {
  using SetThreads = void (*)(int);
  using GetThreads = int (*)();
  auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  auto get = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  const int before = get != nullptr ? get() : -1;
  if (threads == 0) return "left as it is (--openblas-threads 0): " + std::to_string(before) + " threads";
  if (set == nullptr) return "openblas_set_num_threads is not in the process: BLAS threads left as they are";
  set(threads);
  const int after = get != nullptr ? get() : -1;
  return "openblas_set_num_threads(" + std::to_string(threads) + "): " + std::to_string(before) + " -> " +
         std::to_string(after) + " threads";
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const auto n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// When a block's last step returns, the workers may still hold some of its batches (the queue takes 64,
// 21 steps of three layers: most of a block). In a long epoch a worker slower than the training fills
// the queue and holds the training back; a short block would hide that time, so it is waited for here
// and counted. Rows leave the count when a worker has added them (or found them non-finite).
double wait_for_workers(const neuronmap::Session& session) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const auto c = session.counters();
    const auto queued_rows = (c.captured_batches - c.skipped_batches - c.dropped_batches) * kBatch;
    if (c.rows + c.nonfinite_rows >= queued_rows || c.errors > 0) break;
    if (std::chrono::steady_clock::now() - start > std::chrono::seconds(120)) {
      throw std::runtime_error("the workers processed no batch for 120 s");
    }
    // A sleep, not a spin: on two cores a spinning training thread would take the worker's core.
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (const char ch : text) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(ch));
      out += escaped;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string json_array(const std::vector<double>& values) {
  std::string out = "[";
  char number[32];
  for (std::size_t i = 0; i < values.size(); ++i) {
    std::snprintf(number, sizeof number, "%s%.6g", i == 0 ? "" : ", ", values[i]);
    out += number;
  }
  return out + "]";
}

struct Figures {
  std::vector<double> plain, attached_steps, attached, backlog, pair_ratio, pair_ratio_steps, epoch_end;
};

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = parse_args(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "alternating_mlp: " << e.what() << "\n" << kUsage;
    return 2;
  }
  try {
    torch::set_num_threads(1);
    const std::string openblas = limit_openblas(args.openblas_threads);

    Trainer plain;
    // The data of BM_MlpStep: drawn right after the seeded network, one fixed batch every step.
    const auto x = torch::randn({kBatch, 784});
    const auto y = torch::randint(0, 10, {kBatch}, torch::kLong);
    Trainer attached;
    auto session = neuronmap::attach(*attached.net, {"fc1", "fc2", "fc3"},
                                     neuronmap::Options{}.every(1).file(args.file).overwrite(true));

    const int pairs = args.blocks / 2;
    Figures f;
    std::int64_t epoch = 0;
    double loss = 0;
    // every(1): each epoch is a snapshot epoch, so the probes capture from attach() on and every
    // end_epoch opens the next epoch's window. The snapshot's analysis and write (end_epoch starts
    // them on the session's thread, flush waits) are timed apart: left running, they would land in
    // whichever block comes next, plain or attached.
    auto attached_block = [&](bool timed) {
      const double steps_ms = attached.block(x, y, args.steps, loss);
      const double backlog_ms = wait_for_workers(session);
      const auto epoch_start = std::chrono::steady_clock::now();
      session.end_epoch(++epoch, loss);
      session.flush();
      if (timed) {
        f.attached_steps.push_back(steps_ms / args.steps);
        f.backlog.push_back(backlog_ms / args.steps);
        f.attached.push_back((steps_ms + backlog_ms) / args.steps);
        f.epoch_end.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - epoch_start).count());
      }
    };

    // One untimed pair first: allocator pools, OpenBLAS buffers, the run file's first snapshot.
    plain.block(x, y, args.steps, loss);
    attached_block(false);

    std::mt19937 order(kOrderSeed);
    std::bernoulli_distribution plain_first(0.5);
    for (int pair = 0; pair < pairs; ++pair) {
      const bool first_plain = plain_first(order);
      if (!first_plain) attached_block(true);
      f.plain.push_back(plain.block(x, y, args.steps, loss) / args.steps);
      if (first_plain) attached_block(true);
      f.pair_ratio.push_back(f.attached.back() / f.plain.back());
      f.pair_ratio_steps.push_back(f.attached_steps.back() / f.plain.back());
    }

    const auto counters = session.counters();
    session.close();
    const std::string error = session.last_error();
    const std::int64_t expected_batches = 3LL * args.steps * (pairs + 1);
    const std::int64_t snapshots = session.snapshots_written();

    const double plain_ms = median(f.plain), attached_ms = median(f.attached);
    const double steps_ms = median(f.attached_steps);
    const auto [ratio_min, ratio_max] = std::minmax_element(f.pair_ratio.begin(), f.pair_ratio.end());
    const auto [steps_min, steps_max] = std::minmax_element(f.pair_ratio_steps.begin(), f.pair_ratio_steps.end());
    std::printf("alternating_mlp: MLP 784-512-512-10, batch %lld, probes fc1 fc2 fc3, Options{}.every(1)\n",
                static_cast<long long>(kBatch));
    std::printf("  %d pairs of %d-step blocks (order random per pair, seed %u) after 1 untimed pair\n", pairs,
                args.steps, kOrderSeed);
    std::printf("  threads: torch::set_num_threads(1) (intra-op now %d); OpenBLAS: %s\n", torch::get_num_threads(),
                openblas.c_str());
    std::printf("plain    median ms/step                     %8.3f\n", plain_ms);
    std::printf("attached median ms/step (steps + backlog)   %8.3f   steps alone %.3f, backlog %.3f\n", attached_ms,
                steps_ms, median(f.backlog));
    std::printf("ratio of medians attached/plain             %8.3f   steps alone %.3f\n", attached_ms / plain_ms,
                steps_ms / plain_ms);
    std::printf("per-pair ratio min-max                      %.3f-%.3f   steps alone %.3f-%.3f\n", *ratio_min,
                *ratio_max, *steps_min, *steps_max);
    std::printf("epoch end (end_epoch + flush), not in the above: median %.1f ms\n", median(f.epoch_end));
    std::printf("session: captured batches %lld (expected %lld), dropped %lld, errors %lld, snapshots %lld, "
                "last_error \"%s\"\n",
                static_cast<long long>(counters.captured_batches), static_cast<long long>(expected_batches),
                static_cast<long long>(counters.dropped_batches), static_cast<long long>(counters.errors),
                static_cast<long long>(snapshots), error.c_str());

    if (!args.json.empty()) {
      std::ofstream out(args.json);
      out << "{\n  \"model\": \"mlp-784-512-512-10\", \"batch\": " << kBatch << ", \"pairs\": " << pairs
          << ", \"steps_per_block\": " << args.steps << ",\n  \"openblas\": " << json_string(openblas)
          << ",\n  \"plain_ms_per_step\": " << plain_ms << ", \"attached_ms_per_step\": " << attached_ms
          << ", \"attached_steps_only_ms_per_step\": " << steps_ms << ",\n  \"ratio\": " << attached_ms / plain_ms
          << ", \"ratio_steps_only\": " << steps_ms / plain_ms << ", \"pair_ratio_min\": " << *ratio_min
          << ", \"pair_ratio_max\": " << *ratio_max << ",\n  \"epoch_end_ms\": " << median(f.epoch_end)
          << ",\n  \"plain_blocks\": " << json_array(f.plain) << ",\n  \"attached_blocks\": " << json_array(f.attached)
          << ",\n  \"backlog_blocks\": " << json_array(f.backlog) << ",\n  \"pair_ratios\": "
          << json_array(f.pair_ratio) << ",\n  \"captured_batches\": " << counters.captured_batches
          << ", \"dropped_batches\": " << counters.dropped_batches << ", \"snapshots\": " << snapshots
          << ", \"last_error\": " << json_string(error) << "\n}\n";
      if (!out) throw std::runtime_error("cannot write " + args.json);
    }

    // Every step of every attached block must have been captured, in three layers, and analysed.
    if (counters.captured_batches == 0 || counters.captured_batches != expected_batches ||
        counters.dropped_batches != 0 || snapshots != pairs + 1 || !error.empty()) {
      std::fprintf(stderr, "alternating_mlp: the attached session did not capture every block (see above)\n");
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "alternating_mlp: %s\n", e.what());
    return 1;
  }
}
