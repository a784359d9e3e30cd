// Distributed sessions with real processes: 2 and 4 ranks (Gloo over 127.0.0.1, a FileStore) each probe
// their shard of a fixed dataset, and every snapshot must equal the single-process run over the union;
// a rank that dies before a snapshot leaves the others with a clear error and the file readable.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "exec_args.hpp"
#include "neuronmap/run.hpp"
#include "neuronmap/snapshot.hpp"
#include "test_dir.hpp"

namespace nm = neuronmap;
namespace fs = std::filesystem;

namespace {

std::string test_dir() { return neuronmap::test::fresh_test_dir("distributed_tmp"); }

struct Child {
  pid_t pid = -1;
  std::string log;
  int status = -1;
};

Child spawn(std::vector<std::string> args, const std::string& log) {
  args.insert(args.begin(), NEURONMAP_DISTRIBUTED_CHILD);
  Child child;
  child.log = log;
  const auto argv = neuronmap::test::exec_args(args);
  child.pid = ::fork();
  if (child.pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return child;
}

// Waits for every child; kills them all and returns false after `seconds`.
bool wait_all(std::vector<Child>& children, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    bool running = false;
    for (auto& c : children) {
      if (c.pid <= 0) continue;
      int status = 0;
      if (::waitpid(c.pid, &status, WNOHANG) == c.pid) {
        c.status = status;
        c.pid = -1;
      } else {
        running = true;
      }
    }
    if (!running) return true;
    if (std::chrono::steady_clock::now() > deadline) {
      for (auto& c : children) {
        if (c.pid > 0) {
          ::kill(c.pid, SIGKILL);
          ::waitpid(c.pid, &c.status, 0);
          c.pid = -1;
        }
      }
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool exited_zero(const Child& c) { return WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0; }

// The largest differences seen between a distributed snapshot and the single-process one.
struct Differences {
  double moments_relative = 0.0;  // mean, stddev, mean |a|: |d| / max(1, |reference|)
  double correlation = 0.0;       // float32 as stored
  double loss_relative = 0.0;
  void see(double& slot, double value) { slot = std::max(slot, value); }
};

constexpr double kMomentsTolerance = 1e-10;  // float64 sums in another order: ~1e-15 expected
constexpr double kCorrelationTolerance = 1e-6;  // stored as float32: one rounding step is ~6e-8
constexpr double kLossTolerance = 1e-12;

void expect_same(const nm::Snapshot& got, const nm::Snapshot& want, Differences& d) {
  ASSERT_EQ(got.epoch, want.epoch);
  ASSERT_EQ(got.loss_epochs, want.loss_epochs);
  ASSERT_EQ(got.losses.size(), want.losses.size());
  for (std::size_t i = 0; i < want.losses.size(); ++i)
    d.see(d.loss_relative, std::abs(got.losses[i] - want.losses[i]) / std::max(1.0, std::abs(want.losses[i])));
  d.see(d.loss_relative, std::abs(got.loss - want.loss) / std::max(1.0, std::abs(want.loss)));
  ASSERT_EQ(got.layers.size(), want.layers.size());
  for (std::size_t l = 0; l < want.layers.size(); ++l) {
    const auto &a = got.layers[l], &b = want.layers[l];
    SCOPED_TRACE("epoch " + std::to_string(want.epoch) + ", layer " + b.name);
    ASSERT_EQ(a.n_neurons, b.n_neurons);
    ASSERT_GT(b.samples, 0);
    EXPECT_EQ(a.samples, b.samples);
    EXPECT_EQ(a.counters.rows, b.counters.rows);
    EXPECT_EQ(a.counters.captured_batches, b.counters.captured_batches);
    EXPECT_EQ(a.output_shape, b.output_shape);
    EXPECT_EQ(a.min, b.min);  // exact: min and max do not depend on the order
    EXPECT_EQ(a.max, b.max);
    EXPECT_EQ(a.dead, b.dead);
    auto relative = [&](const std::vector<double>& x, const std::vector<double>& y) {
      EXPECT_EQ(x.size(), y.size());
      for (std::size_t i = 0; i < std::min(x.size(), y.size()); ++i)
        d.see(d.moments_relative, std::abs(x[i] - y[i]) / std::max(1.0, std::abs(y[i])));
    };
    relative(a.mean, b.mean);
    relative(a.stddev, b.stddev);
    relative(a.mean_abs, b.mean_abs);
    ASSERT_EQ(a.correlation.size(), b.correlation.size());
    for (std::size_t i = 0; i < b.correlation.size(); ++i)
      d.see(d.correlation, std::abs(static_cast<double>(a.correlation[i]) - b.correlation[i]));
    EXPECT_EQ(a.labels, b.labels);
    ASSERT_EQ(a.groups.size(), b.groups.size());
    for (std::size_t g = 0; g < b.groups.size(); ++g) {
      EXPECT_EQ(a.groups[g].neuron_indices, b.groups[g].neuron_indices);
      EXPECT_EQ(a.groups[g].activation_pattern, b.groups[g].activation_pattern);
      EXPECT_EQ(a.groups[g].selectivity, b.groups[g].selectivity);  // from the reservoir rows and tags
    }
    // The reservoir: the same samples (global ids), rows, tags and per-sample losses.
    EXPECT_EQ(a.reservoir_ids, b.reservoir_ids);
    EXPECT_EQ(a.reservoir, b.reservoir);
    EXPECT_EQ(a.reservoir_tags, b.reservoir_tags);
    ASSERT_EQ(a.reservoir_loss.size(), b.reservoir_loss.size());
    for (std::size_t i = 0; i < b.reservoir_loss.size(); ++i) EXPECT_EQ(a.reservoir_loss[i], b.reservoir_loss[i]);
  }
}

std::vector<std::string> rank_args(const std::string& dir, int world, int rank, const std::string& out) {
  return {"--world", std::to_string(world), "--rank", std::to_string(rank), "--store", dir + "/store",
          "--out", out};
}

void compare_with_single_process(int world) {
  const auto dir = test_dir();
  const std::vector<std::string> common = {"--epochs", "4", "--every", "2"};
  std::vector<Child> children;
  auto with = [&](std::vector<std::string> a) {
    a.insert(a.end(), common.begin(), common.end());
    return a;
  };
  children.push_back(spawn(with({"--out", dir + "/single.h5"}), dir + "/single.log"));
  for (int r = 0; r < world; ++r) {
    // Only rank 0 may open the run file: the others get a path they could not create.
    const auto out = r == 0 ? dir + "/distributed.h5" : dir + "/missing/dir/run.h5";
    children.push_back(spawn(with(rank_args(dir, world, r, out)), dir + "/rank" + std::to_string(r) + ".log"));
  }
  ASSERT_TRUE(wait_all(children, 120)) << "a process did not finish";
  for (const auto& c : children) {
    const auto log = read_file(c.log);
    ASSERT_TRUE(exited_zero(c)) << c.log << ":\n" << log;
    EXPECT_NE(log.find("snapshots=2 error=\n"), std::string::npos) << c.log << ":\n" << log;
  }
  EXPECT_FALSE(fs::exists(dir + "/missing"));

  const auto single = nm::Run::open(dir + "/single.h5");
  const auto distributed = nm::Run::open(dir + "/distributed.h5");
  ASSERT_EQ(single.size(), 2);
  ASSERT_EQ(distributed.size(), 2);
  EXPECT_NE(distributed.info().options_json.find("\"process_group\":{\"size\":" + std::to_string(world) + "}"),
            std::string::npos) << distributed.info().options_json;
  Differences d;
  for (std::int64_t i = 0; i < single.size(); ++i) expect_same(distributed.snapshot(i), single.snapshot(i), d);
  std::cout << world << " ranks vs one process: max relative difference of mean/stddev/mean|a| "
            << d.moments_relative << ", of the losses " << d.loss_relative << "; max |correlation difference| "
            << d.correlation << " (float32)\n";
  EXPECT_LE(d.moments_relative, kMomentsTolerance);
  EXPECT_LE(d.loss_relative, kLossTolerance);
  EXPECT_LE(d.correlation, kCorrelationTolerance);
}

}  // namespace

TEST(Distributed, TwoRanksEqualOneProcessOverTheUnion) { compare_with_single_process(2); }

TEST(Distributed, FourRanksEqualOneProcessOverTheUnion) { compare_with_single_process(4); }

// Rank 1 exits before the epoch-4 snapshot's collective. Rank 0 must not hang (the collective fails
// when the peer's connection closes, at the latest after the group's 5 s timeout), must finish its
// training with the error recorded, and its run file must hold the epoch-2 snapshot, equal to the
// single-process one.
TEST(Distributed, ADyingRankLeavesAClearErrorAndTheCompletedSnapshots) {
  const auto dir = test_dir();
  const std::vector<std::string> common = {"--epochs", "6", "--every", "2"};
  std::vector<Child> children;
  auto with = [&](std::vector<std::string> a) {
    a.insert(a.end(), common.begin(), common.end());
    return a;
  };
  children.push_back(spawn(with({"--out", dir + "/single.h5"}), dir + "/single.log"));
  for (int r = 0; r < 2; ++r) {
    auto a = with(rank_args(dir, 2, r, dir + "/distributed.h5"));
    for (const char* extra : {"--die-rank", "1", "--die-epoch", "4", "--timeout-ms", "5000"}) a.push_back(extra);
    children.push_back(spawn(a, dir + "/rank" + std::to_string(r) + ".log"));
  }
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_all(children, 120)) << "a process hung";
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(exited_zero(children[0])) << read_file(children[0].log);
  ASSERT_TRUE(exited_zero(children[1])) << read_file(children[1].log);
  ASSERT_TRUE(WIFEXITED(children[2].status) && WEXITSTATUS(children[2].status) == 3) << read_file(children[2].log);
  const auto log = read_file(children[1].log);
  std::cout << "rank 0 after rank 1 died (" << seconds << " s for all processes): " << log;
  EXPECT_NE(log.find("snapshots=1 error=distributed snapshot at epoch 4 (gloo process group, rank 0 of 2): "),
            std::string::npos) << log;
  EXPECT_NE(log.find("the run file keeps the earlier ones"), std::string::npos) << log;
  // The failed collective returned within the group's 5 s timeout (plus slack for a loaded machine).
  const auto at = log.find("longest end_epoch ");
  ASSERT_NE(at, std::string::npos) << log;
  EXPECT_LT(std::stod(log.substr(at + 18)), 15000.0) << log;

  const auto single = nm::Run::open(dir + "/single.h5");
  const auto distributed = nm::Run::open(dir + "/distributed.h5");
  ASSERT_EQ(single.size(), 3);
  ASSERT_EQ(distributed.size(), 1);
  Differences d;
  expect_same(distributed.snapshot(0), single.snapshot(0), d);
  EXPECT_LE(d.moments_relative, kMomentsTolerance);
  EXPECT_LE(d.correlation, kCorrelationTolerance);
}
