// Run files for the report tests: layers with planted groups of correlated neurons, written through
// RunWriter, and a helper that runs a command and collects its output.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "exec_args.hpp"
#include "neuronmap/run.hpp"
#include "neuronmap/snapshot.hpp"
#include "report/report.hpp"
#include "store/run_file.hpp"

namespace neuronmap::test {

namespace fs = std::filesystem;

/// A fresh, empty directory named after the running test.
inline std::string test_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::path(NEURONMAP_TEST_BINARY_DIR) / "report_tmp" /
                 (std::string(info->test_suite_name()) + "." + info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

/// The grouping threshold planted runs name in their options.
constexpr double kPlantedThreshold = 0.6;

struct LayerPlan {
  std::string name, type, reduction;
  std::int64_t neurons;
  bool store_correlation = true;
};

/// One layer whose neurons fall into `groups` planted groups (shuffled positions), with a few dead
/// neurons whose correlations are undefined (NaN), as the analysis stores them.
inline LayerSnapshot planted_layer(const LayerPlan& plan, int snapshot, int groups, std::uint64_t seed) {
  std::mt19937_64 rng(seed * 7919 + static_cast<std::uint64_t>(snapshot) * 104729 + plan.neurons);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform;
  const std::int64_t n = plan.neurons;
  LayerSnapshot l;
  l.name = plan.name;
  l.n_neurons = n;
  l.samples = 256 * (snapshot + 1);
  l.output_shape = plan.type.find("Conv") != std::string::npos ? std::vector<std::int64_t>{32, n, 8, 8}
                                                                 : std::vector<std::int64_t>{32, n};
  // Planted membership: each neuron a group or none (-1), neurons in random order.
  std::vector<std::int32_t> member(static_cast<std::size_t>(n), -1);
  std::vector<std::int32_t> perm(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) perm[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
  std::shuffle(perm.begin(), perm.end(), rng);
  const std::int64_t grouped = n * 3 / 4;
  for (std::int64_t k = 0; k < grouped && groups > 0; ++k)
    member[static_cast<std::size_t>(perm[static_cast<std::size_t>(k)])] = static_cast<std::int32_t>(k % groups);
  std::vector<std::uint8_t> dead(static_cast<std::size_t>(n), 0);
  for (std::int64_t k = grouped; k < n; ++k)
    if (uniform(rng) < 0.25) dead[static_cast<std::size_t>(perm[static_cast<std::size_t>(k)])] = 1;

  for (std::int64_t i = 0; i < n; ++i) {
    const double mean = dead[static_cast<std::size_t>(i)] ? 0.0 : 0.5 + 0.3 * normal(rng);
    const double sd = dead[static_cast<std::size_t>(i)] ? 0.0 : 0.2 + 0.1 * uniform(rng);
    l.mean.push_back(mean);
    l.stddev.push_back(sd);
    l.min.push_back(dead[static_cast<std::size_t>(i)] ? 0.0 : mean - 3 * sd);
    l.max.push_back(dead[static_cast<std::size_t>(i)] ? 0.0 : mean + 3 * sd);
    l.dead.push_back(dead[static_cast<std::size_t>(i)]);
  }
  const auto strength = [&](int g) { return 0.45 + 0.4 * (g % 3) / 2.0 + 0.02 * snapshot; };
  if (plan.store_correlation) {
    l.correlation.assign(static_cast<std::size_t>(n * n), 0.0f);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = i; j < n; ++j) {
        double r;
        const auto gi = member[static_cast<std::size_t>(i)], gj = member[static_cast<std::size_t>(j)];
        if (dead[static_cast<std::size_t>(i)] || dead[static_cast<std::size_t>(j)]) r = std::nan("");
        else if (i == j) r = 1.0;
        else if (gi >= 0 && gi == gj) r = std::clamp(strength(gi) + 0.08 * normal(rng), -1.0, 1.0);
        else r = std::clamp(0.12 * normal(rng) - (gi >= 0 && gj >= 0 && (gi + gj) % 4 == 1 ? 0.3 : 0.0), -1.0, 1.0);
        l.correlation[static_cast<std::size_t>(i * n + j)] = l.correlation[static_cast<std::size_t>(j * n + i)] =
            static_cast<float>(r);
      }
  }
  // Groups, numbered by their smallest neuron as the analysis numbers them.
  std::vector<std::vector<std::int32_t>> members(static_cast<std::size_t>(std::max(groups, 0)));
  for (std::int64_t i = 0; i < n; ++i)
    if (member[static_cast<std::size_t>(i)] >= 0)
      members[static_cast<std::size_t>(member[static_cast<std::size_t>(i)])].push_back(static_cast<std::int32_t>(i));
  std::sort(members.begin(), members.end());
  l.labels.assign(static_cast<std::size_t>(n), -1);
  for (std::size_t g = 0; g < members.size(); ++g) {
    if (members[g].size() < 2) continue;
    Group group;
    group.group_id = static_cast<int>(l.groups.size());
    group.layer_name = plan.name;
    group.neuron_indices = members[g];
    for (auto idx : members[g]) l.labels[static_cast<std::size_t>(idx)] = group.group_id;
    // Cohesion as the analysis defines it: the mean pairwise correlation inside, clipped to [0, 1].
    double sum = 0;
    int pairs = 0;
    if (plan.store_correlation)
      for (std::size_t a = 0; a < members[g].size(); ++a)
        for (std::size_t b = a + 1; b < members[g].size(); ++b) {
          const float r = l.correlation[static_cast<std::size_t>(members[g][a] * n + members[g][b])];
          if (std::isfinite(r)) sum += r, ++pairs;
        }
    group.cohesion_score = std::clamp(pairs > 0 ? sum / pairs : strength(static_cast<int>(g)), 0.0, 1.0);
    // The weakest member (NaN without a matrix, as in files that predate it), and the loose mark at the
    // threshold planted_info's options give (the weakest planted groups fall below it).
    group.min_member_correlation = plan.store_correlation ? 1.0 : std::nan("");
    if (plan.store_correlation && members[g].size() > 1)
      for (auto a : members[g]) {
        double with_rest = 0;
        for (auto b : members[g])
          if (b != a) with_rest += l.correlation[static_cast<std::size_t>(a * n + b)];
        group.min_member_correlation =
            std::min(group.min_member_correlation, with_rest / static_cast<double>(members[g].size() - 1));
      }
    group.loose = group.cohesion_score < kPlantedThreshold;
    double act = 0;
    for (auto idx : members[g]) act += l.mean[static_cast<std::size_t>(idx)];
    group.mean_activation = act / static_cast<double>(members[g].size());
    for (int k = 0; k < 16; ++k) group.activation_pattern.push_back(static_cast<float>(normal(rng)));
    if (g % 2 == 0) group.learning_phase = snapshot < 2 ? "early" : "consolidation";
    if (g % 3 == 0) group.skill_category = "mathematical";
    l.groups.push_back(std::move(group));
  }
  // Sample rows (the reservoir) that follow the plan: a group's members share one signal per row, with
  // the group's strength; dead neurons stay at 0. Its own random stream, so the values above stay as they were.
  std::mt19937_64 rows_rng(seed * 31 + static_cast<std::uint64_t>(snapshot) * 7 + static_cast<std::uint64_t>(n));
  constexpr int kRows = 48;
  for (int r = 0; r < kRows; ++r) {
    std::vector<double> signal(static_cast<std::size_t>(std::max(groups, 0)));
    for (auto& v : signal) v = normal(rows_rng);
    for (std::int64_t i = 0; i < n; ++i) {
      const auto k = static_cast<std::size_t>(i);
      const auto g = member[k];
      const double shared = g >= 0 ? std::sqrt(strength(g)) * signal[static_cast<std::size_t>(g)] : 0.0;
      const double own = (g >= 0 ? std::sqrt(1.0 - strength(g)) : 1.0) * normal(rows_rng);
      l.reservoir.push_back(dead[k] ? 0.0f : static_cast<float>(l.mean[k] + l.stddev[k] * (shared + own)));
    }
    l.reservoir_ids.push_back(r * 16);
  }
  l.counters.captured_batches = 40;
  l.counters.rows = l.samples;
  return l;
}

inline RunInfo planted_info(const std::vector<LayerPlan>& plans) {
  RunInfo info;
  info.library_version = "0.1.0";
  info.torch_version = "1.13.0";
  info.device = "cpu";
  info.created = "2026-01-02T03:04:05Z";
  info.options_json = R"({"every": 5, "threshold": 0.6})";
  for (const auto& p : plans) info.layers.push_back({p.name, p.type, p.reduction});
  return info;
}

/// The standard test run: four layers (names with '.' and '/', one without a stored matrix), four
/// snapshots at epochs 5..20 with more groups as training goes on, a NaN loss at epoch 15.
inline std::vector<LayerPlan> standard_layers() {
  return {{"conv1", "torch::nn::Conv2dImpl", "spatial mean over [H, W]", 16},
          {"features.3", "torch::nn::Conv2dImpl", "spatial mean over [H, W]", 40},
          {"fc1", "torch::nn::LinearImpl", "rows as samples", 96},
          {"head/out", "torch::nn::LinearImpl", "rows as samples", 10, false}};
}

inline void write_planted_run(const std::string& path, const std::vector<LayerPlan>& plans, int snapshots,
                              std::uint64_t seed = 1) {
  detail::RunWriter writer(path, planted_info(plans), true);
  for (int s = 0; s < snapshots; ++s) {
    Snapshot snap;
    snap.epoch = 5 * (s + 1);
    snap.loss = s == 2 ? std::numeric_limits<double>::quiet_NaN() : 2.3 / (1.0 + s);
    snap.timestamp = 1.77e9 + 60.0 * s;
    for (std::size_t k = 0; k < plans.size(); ++k)
      snap.layers.push_back(planted_layer(plans[k], s, 2 + s + static_cast<int>(k % 3), seed + k));
    writer.append(snap);
  }
  writer.close();
}

/// The learning data a v2 run file holds (events, phases, CKA, dormant rates, the loss of every epoch,
/// lineages, selectivity), added to planted snapshot `s` of `count`.
inline void add_learning(Snapshot& snap, int s) {
  static const char* const kPhases[] = {"", "rapid", "refinement", "plateau", "unstable"};
  snap.phase = kPhases[s % 5];
  for (int e = 5 * s + 1; e <= 5 * (s + 1); ++e) {
    snap.loss_epochs.push_back(e);
    snap.losses.push_back(2.5 / (1.0 + 0.2 * e) + 0.05 * std::sin(e));
  }
  for (auto& l : snap.layers) {
    l.cka_previous = s == 0 ? std::nan("") : 0.6 + 0.08 * s;
    l.mean_abs.assign(static_cast<std::size_t>(l.n_neurons), 0.5);
    l.dormant_rate = 0.05 * (s % 3);
    for (auto& g : l.groups) {
      g.lineage_id = 100 * s + g.group_id;
      g.selectivity = 0.1 * (g.group_id % 5);
      g.importance = 0.01 * (g.group_id + 1);
      g.loss_correlation = -0.2 + 0.05 * g.group_id;
    }
    if (s == 0) continue;
    Event emerged;
    emerged.epoch = snap.epoch;
    emerged.layer = l.name;
    emerged.kind = "emerged";
    emerged.lineages = {100 * s};
    emerged.strength = 0.4 + 0.1 * s;
    emerged.skill_category = "digits";
    emerged.loss_change = -0.3;
    snap.events.push_back(emerged);
    Event jump = emerged;
    jump.kind = "cohesion_jump";
    jump.strength = 0.25;
    jump.skill_category = "";
    snap.events.push_back(jump);
  }
}

/// A run held in memory: what a v2 file would return, for report features the store may not yet keep.
class MemoryRun final : public report::RunSource {
 public:
  MemoryRun(RunInfo info, std::vector<Snapshot> snapshots) : info_(std::move(info)), snapshots_(std::move(snapshots)) {}
  const RunInfo& info() const override { return info_; }
  std::int64_t size() const override { return static_cast<std::int64_t>(snapshots_.size()); }
  Snapshot snapshot(std::int64_t i) const override { return snapshots_.at(static_cast<std::size_t>(i)); }
  SnapshotSummary summary(std::int64_t i) const override {
    const auto& s = snapshots_.at(static_cast<std::size_t>(i));
    SnapshotSummary out{s.epoch, s.loss, s.timestamp, {}};
    for (const auto& l : s.layers) {
      out.layers.push_back({l.name, l.n_neurons, l.samples, static_cast<std::int64_t>(l.groups.size()),
                            l.mean_cohesion(), l.dead_count(), l.counters});
      for (const auto& g : l.groups)
        out.layers.back().group_summaries.push_back({g.group_id, static_cast<std::int64_t>(g.group_size()),
                                                     g.cohesion_score, g.min_member_correlation, g.loose});
    }
    return out;
  }

 private:
  RunInfo info_;
  std::vector<Snapshot> snapshots_;
};

/// The standard layers over `count` snapshots, with learning data, in memory.
inline MemoryRun planted_memory_run(int count) {
  const auto plans = standard_layers();
  std::vector<Snapshot> snapshots;
  for (int s = 0; s < count; ++s) {
    Snapshot snap;
    snap.epoch = 5 * (s + 1);
    snap.loss = 2.3 / (1.0 + s);
    snap.timestamp = 1.77e9 + 60.0 * s;
    for (std::size_t k = 0; k < plans.size(); ++k)
      snap.layers.push_back(planted_layer(plans[k], s, 2 + s + static_cast<int>(k % 3), 1 + k));
    add_learning(snap, s);
    snapshots.push_back(std::move(snap));
  }
  auto info = planted_info(plans);
  info.tag_names = {"digits", "letters"};
  return MemoryRun(std::move(info), std::move(snapshots));
}

struct CommandResult {
  int exit_code = -1;
  bool timed_out = false;
  std::string out, err;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Runs argv[0] (a path) with stdout and stderr captured; `env` entries ("NAME=value") are added.
inline CommandResult run_command(const std::vector<std::string>& argv, const std::string& scratch,
                                 const std::vector<std::string>& env = {}, int timeout_s = 60) {
  const std::string out_path = scratch + "/.stdout", err_path = scratch + "/.stderr";
  // Everything the child needs is built before fork(): a forked child of a multithreaded test must
  // not allocate before exec (a sanitizer allocator's lock held by another thread stays locked).
  const auto args = neuronmap::test::exec_args(argv);
  std::vector<char*> environment;
  for (const auto& e : env) environment.push_back(const_cast<char*>(e.c_str()));
  for (char** e = environ; *e != nullptr; ++e) environment.push_back(*e);  // ours first: getenv takes the first
  environment.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int null = ::open("/dev/null", O_RDONLY);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::dup2(null, 0);
    ::setpgid(0, 0);  // its own group, so a timeout can end it with its children (a browser has many)
    ::execve(args[0], args.data(), environment.data());
    ::_exit(127);
  }
  CommandResult r;
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  for (;;) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      r.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  return r;
}

}  // namespace neuronmap::test
