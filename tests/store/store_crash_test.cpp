// The run file against the outside world: kill -9 at random moments, a full disk, and `neuronmap
// inspect` on good, damaged and foreign files.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "neuronmap/errors.hpp"
#include "neuronmap/version.hpp"
#include "process.hpp"
#include "sample_run.hpp"
#include "store/run_file.hpp"
#include "test_files.hpp"

namespace neuronmap::test {
namespace {

using detail::RunReader;

const char* kPython = "/usr/bin/python3";

bool python_has_h5py() {
  static const bool has = [] {
    if (!fs::exists(kPython)) return false;
    const auto r = run_process({kPython, "-c", "import h5py"}, 60);
    return r.exit_code == 0;
  }();
  return has;
}

ProcessResult inspect(const std::string& path, bool json = false, bool events = false) {
  std::vector<std::string> argv = {NEURONMAP_CLI, "inspect", path};
  if (json) argv.push_back("--json");
  if (events) argv.push_back("--events");
  return run_process(argv, 300);  // generous: a loaded CI machine (and ASan) slow every process start
}

/// Parses the "committed <i>" lines; returns how many snapshots the writer reported as committed.
std::int64_t committed_from(const std::vector<std::string>& lines, std::int64_t so_far) {
  for (const auto& line : lines)
    if (line.rfind("committed ", 0) == 0) so_far = std::max<std::int64_t>(so_far, std::stoll(line.substr(10)) + 1);
  return so_far;
}

// Checks a file the writer reported `committed` snapshots for; returns the snapshots it holds. A dead
// writer may have committed one more than it could report; a live one may be ahead by any number.
std::int64_t expect_intact(const std::string& path, std::int64_t committed, bool writer_alive = false) {
  RunReader reader(path);
  EXPECT_GE(reader.size(), committed) << path;
  if (!writer_alive) {
    EXPECT_LE(reader.size(), committed + 1) << path;
  }
  for (std::int64_t i = 0; i < reader.size(); ++i)
    EXPECT_EQ(difference(reader.snapshot(i), sample_snapshot(i)), "") << path << " snapshot " << i;
  return reader.size();
}

// kill -9 at random moments: during start-up (skeleton, rename, first snapshot), between snapshots,
// with a live reader, and aimed into the middle of an append (a random point within the time the
// previous append took). Every file must open with our reader, `neuronmap inspect` and h5py, and hold
// every snapshot the writer logged as committed, bit-exact. NEURONMAP_KILL_TRIALS sets the number of
// trials (default 25; scripts/crash-trials runs 200), NEURONMAP_KILL_SEED the seed.
TEST(Crash, KillNineKeepsEveryCommittedSnapshot) {
  const auto dir = test_dir();
  const int trials = std::getenv("NEURONMAP_KILL_TRIALS") ? std::atoi(std::getenv("NEURONMAP_KILL_TRIALS")) : 25;
  const unsigned seed = std::getenv("NEURONMAP_KILL_SEED") ? std::atoi(std::getenv("NEURONMAP_KILL_SEED")) : 20261128u;
  std::mt19937 rng(seed);
  std::int64_t logged_total = 0, found_total = 0, files = 0, no_file = 0, live_checks = 0, mid_write = 0,
               one_more = 0;
  // `neuronmap inspect` runs overlap the next trials, two at a time (a damaged file may take its --timeout).
  std::deque<std::pair<std::string, std::future<ProcessResult>>> inspections;
  std::int64_t cli_checks = 0;
  const auto collect_one = [&] {
    auto [path, result] = std::move(inspections.front());
    inspections.pop_front();
    const auto r = result.get();
    EXPECT_EQ(r.exit_code, 0) << path << ": " << r.err << (r.timed_out ? " (timed out)" : "") << " signal " << r.signal;
    EXPECT_EQ(r.err, "") << path;
    EXPECT_NE(r.out.find("snapshots"), std::string::npos) << path << ": " << r.out;
    ++cli_checks;
  };
  std::vector<std::string> h5py_args = {kPython, std::string(NEURONMAP_SOURCE_DIR) + "/tests/store/read_with_h5py.py"};

  for (int t = 0; t < trials; ++t) {
    SCOPED_TRACE("trial " + std::to_string(t) + " (seed " + std::to_string(seed) + ")");
    const auto path = dir + "/kill_" + std::to_string(t) + ".h5";
    std::int64_t committed = 0;
    const int kind = t % 5;
    {
      ChildProcess child({NEURONMAP_STORE_CHILD, path});
      if (kind == 0) {
        // Shortly after start: while the skeleton is built, renamed or the first snapshot written.
        std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 60000)(rng)));
      } else {
        const std::int64_t target = std::uniform_int_distribution<int>(1, 12)(rng);
        std::string line;
        long long last_append_us = 0;
        while (committed < target && child.read_line(line, 30000)) {
          committed = committed_from({line}, committed);
          if (line.rfind("committed ", 0) == 0) last_append_us = std::atoll(line.c_str() + line.rfind(' '));
        }
        ASSERT_GE(committed, target) << "the writer stopped early";
        if (kind == 2) {
          // A live reader while the writer runs: everything it sees is committed and exact.
          expect_intact(path, committed, true);
          ++live_checks;
        }
        if (kind >= 3) {
          // Into the next append: wait for its "writing" line, then a random part of an append's duration.
          while (child.read_line(line, 30000) && line.rfind("writing ", 0) != 0) committed = committed_from({line}, committed);
          ++mid_write;
          std::this_thread::sleep_for(std::chrono::microseconds(
              std::uniform_int_distribution<long long>(0, std::max<long long>(last_append_us, 1))(rng)));
        } else {
          std::this_thread::sleep_for(std::chrono::microseconds(std::uniform_int_distribution<int>(0, 20000)(rng)));
        }
      }
      child.kill(SIGKILL);
      const int status = child.wait();
      EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the writer exited on its own";
      committed = committed_from(child.drain_lines(), committed);
    }
    logged_total += committed;
    if (!fs::exists(path)) {
      // Killed before the rename: no file, so nothing can have been committed.
      EXPECT_EQ(committed, 0);
      ++no_file;
      continue;
    }
    ++files;
    const auto found = expect_intact(path, committed);
    found_total += found;
    one_more += found > committed;

    while (inspections.size() >= 2) collect_one();
    inspections.emplace_back(path, std::async(std::launch::async, [path, json = t % 2 == 1] { return inspect(path, json); }));
    h5py_args.push_back(path);
    h5py_args.push_back(std::to_string(committed));
  }
  while (!inspections.empty()) collect_one();

  std::int64_t h5py_checks = 0;
  if (python_has_h5py() && files > 0) {
    const auto py = run_process(h5py_args, 600);
    EXPECT_EQ(py.exit_code, 0) << py.out << py.err;
    std::istringstream lines(py.out);
    for (std::string line; std::getline(lines, line);) h5py_checks += line.rfind("ok ", 0) == 0;
    EXPECT_EQ(h5py_checks, files) << py.out << py.err;
  }
  std::printf("kill -9: %d trials (%lld aimed into an append), %lld files (%lld killed before the file existed); "
              "%lld snapshots logged as committed, %lld found intact (%lld files held one more, committed just "
              "before the kill); %lld live reads, %lld inspect runs, %lld h5py reads%s\n",
              trials, static_cast<long long>(mid_write), static_cast<long long>(files), static_cast<long long>(no_file),
              static_cast<long long>(logged_total), static_cast<long long>(found_total), static_cast<long long>(one_more),
              static_cast<long long>(live_checks), static_cast<long long>(cli_checks),
              static_cast<long long>(h5py_checks), python_has_h5py() ? "" : " (no h5py: skipped)");
  EXPECT_GT(files, trials / 2);
  EXPECT_GE(found_total, logged_total);
}

struct WriterRun {
  std::vector<std::string> lines;
  std::string all;
  int status = 0;
  std::int64_t committed = 0;
};

WriterRun run_writer(const std::vector<std::string>& argv) {
  WriterRun run;
  ChildProcess child(argv);
  std::string line;
  while (child.read_line(line, 60000)) {
    run.lines.push_back(line);
    run.all += line + "\n";
  }
  run.status = child.wait();
  run.committed = committed_from(run.lines, 0);
  return run;
}

// RLIMIT_FSIZE makes writes past the limit fail with EFBIG, as a full disk fails them with ENOSPC.
TEST(Crash, FullDiskFailsTheAppendAndKeepsEarlierSnapshots) {
  const auto dir = test_dir();
  // From "no room for the first snapshot" to "room for a few" (snapshots of about 1 MiB).
  const long long limits[] = {64 * 1024, 4 * 1024 * 1024, 8 * 1024 * 1024};
  std::int64_t committed_total = 0;
  for (const long long limit : limits) {
    SCOPED_TRACE("RLIMIT_FSIZE " + std::to_string(limit));
    const auto path = dir + "/full_" + std::to_string(limit) + ".h5";
    const auto run =
        run_writer({NEURONMAP_STORE_CHILD, path, "--fsize", std::to_string(limit), "--count", "200", "--scale", "4"});
    ASSERT_TRUE(WIFEXITED(run.status)) << run.all;
    ASSERT_EQ(WEXITSTATUS(run.status), 3) << "expected the disk to fill up:\n" << run.all;
    int failed = 0;
    for (const auto& l : run.lines) {
      if (l.rfind("failed ", 0) != 0) continue;
      ++failed;
      EXPECT_NE(l.find("File too large"), std::string::npos) << l;
      EXPECT_NE(l.find("earlier snapshots are kept"), std::string::npos) << l;
    }
    EXPECT_EQ(failed, 2) << "the append and its retry both fail:\n" << run.all;
    EXPECT_NE(run.all.find("\nclosed\n"), std::string::npos) << "closing after a full disk works:\n" << run.all;

    RunReader reader(path);
    EXPECT_EQ(reader.size(), run.committed) << run.all;
    for (std::int64_t i = 0; i < reader.size(); ++i)
      EXPECT_EQ(difference(reader.snapshot(i), sample_snapshot(i, 4)), "") << "snapshot " << i;
    committed_total += run.committed;
    std::printf("RLIMIT_FSIZE %lld: %lld snapshots committed, then \"%s\"\n", limit,
                static_cast<long long>(run.committed), run.lines.size() > 3 ? run.lines[run.lines.size() - 3].c_str() : "?");
    if (limit == limits[2]) {
      const auto r = inspect(path);
      EXPECT_EQ(r.exit_code, 0) << r.err;
    }
  }
  EXPECT_GT(committed_total, 0) << "no limit let any snapshot through: the limits no longer fit the sample";
}

// Writes that fail inside HDF5 (here EIO from every pwrite, after the space reservation succeeded)
// detach the file: committed snapshots stay readable, later appends are refused.
TEST(Crash, IoErrorInsideHdf5KeepsCommittedSnapshots) {
  const auto dir = test_dir();
  for (const int after : {0, 3}) {
    SCOPED_TRACE("EIO after " + std::to_string(after));
    const auto path = dir + "/eio_" + std::to_string(after) + ".h5";
    const auto run = run_writer({NEURONMAP_STORE_CHILD, path, "--io-error-after", std::to_string(after), "--count", "20"});
    EXPECT_EQ(run.committed, after) << run.all;
    ASSERT_NE(run.all.find("failed "), std::string::npos) << run.all;
    EXPECT_NE(run.all.find("Input/output error"), std::string::npos) << run.all;
    EXPECT_NE(run.all.find("takes no more snapshots"), std::string::npos) << run.all;
    // HDF5 1.10.8 cannot flush a file again after a failed metadata flush and crashes when it closes
    // it at exit (H5F__close_cb); the file on disk is unaffected. Report, don't hide it.
    if (WIFSIGNALED(run.status))
      std::printf("EIO after %d: the writer process died of signal %d at exit (HDF5 1.10.8)\n", after,
                  WTERMSIG(run.status));
    else
      EXPECT_EQ(WEXITSTATUS(run.status), 3) << run.all;

    RunReader reader(path);
    EXPECT_EQ(reader.size(), after);
    for (std::int64_t i = 0; i < reader.size(); ++i)
      EXPECT_EQ(difference(reader.snapshot(i), sample_snapshot(i)), "") << "snapshot " << i;
  }
}

TEST(Inspect, PrintsATableAndValidJson) {
  const auto path = test_dir() + "/run.h5";
  write_sample_run(path, 4);

  const auto text = inspect(path, false, true);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.err, "");
  for (const char* part : {"format_version", "conv1", "torch::nn::Conv2dImpl", "extra.not_in_info", "cohesion", "dropped",
                           "nan", "phase", "rapid_learning", "unstable", "events (6)", "lineages", "3002,3009,3016",
                           "loss change", "cat, dog", "loose", "min member r"})
    EXPECT_NE(text.out.find(part), std::string::npos) << part << "\n" << text.out;
  // One row per snapshot and layer, one per event (0 + 1 + 2 + 3).
  std::size_t rows = 6;
  for (std::int64_t i = 0; i < 4; ++i) rows += sample_snapshot(i).layers.size();
  EXPECT_GE(count_lines(text.out), rows + 12);

  const auto json = inspect(path, true);
  ASSERT_EQ(json.exit_code, 0) << json.err;
  rapidjson::Document doc;
  doc.Parse(json.out.c_str());
  ASSERT_FALSE(doc.HasParseError()) << "invalid JSON at offset " << doc.GetErrorOffset() << ":\n" << json.out;
  ASSERT_TRUE(doc.IsObject());
  EXPECT_EQ(doc["format_version"].GetInt(), kFormatVersion);
  EXPECT_EQ(std::string(doc["options_json"].GetString()), sample_info().options_json);
  ASSERT_EQ(doc["tag_names"].Size(), sample_info().tag_names.size());
  EXPECT_EQ(std::string(doc["tag_names"][3].GetString()), sample_info().tag_names[3]);
  ASSERT_EQ(doc["layers"].Size(), 4u);
  const auto& snaps = doc["snapshots"];
  ASSERT_EQ(snaps.Size(), 4u);
  for (rapidjson::SizeType i = 0; i < snaps.Size(); ++i) {
    const auto want = sample_snapshot(i);
    EXPECT_EQ(snaps[i]["epoch"].GetInt64(), want.epoch);
    if (std::isnan(want.loss)) {
      EXPECT_TRUE(snaps[i]["loss"].IsNull());
    } else {
      EXPECT_DOUBLE_EQ(snaps[i]["loss"].GetDouble(), want.loss);
    }
    EXPECT_EQ(std::string(snaps[i]["phase"].GetString()), want.phase);
    EXPECT_EQ(snaps[i]["n_events"].GetUint64(), want.events.size());
    ASSERT_EQ(snaps[i]["events"].Size(), want.events.size());
    for (rapidjson::SizeType k = 0; k < want.events.size(); ++k) {
      const auto& e = snaps[i]["events"][k];
      const auto& w = want.events[k];
      EXPECT_EQ(e["epoch"].GetInt64(), w.epoch);
      EXPECT_EQ(std::string(e["layer"].GetString()), w.layer);
      EXPECT_EQ(std::string(e["kind"].GetString()), w.kind);
      ASSERT_EQ(e["lineages"].Size(), w.lineages.size());
      for (rapidjson::SizeType m = 0; m < w.lineages.size(); ++m) EXPECT_EQ(e["lineages"][m].GetInt64(), w.lineages[m]);
      EXPECT_DOUBLE_EQ(e["strength"].GetDouble(), w.strength);
      EXPECT_EQ(std::string(e["skill_category"].GetString()), w.skill_category);
      if (std::isnan(w.loss_change)) {
        EXPECT_TRUE(e["loss_change"].IsNull());
      } else {
        EXPECT_DOUBLE_EQ(e["loss_change"].GetDouble(), w.loss_change);
      }
    }
    ASSERT_EQ(snaps[i]["layers"].Size(), want.layers.size());
    for (rapidjson::SizeType k = 0; k < want.layers.size(); ++k) {
      const auto& l = snaps[i]["layers"][k];
      EXPECT_EQ(std::string(l["name"].GetString()), want.layers[k].name);
      EXPECT_EQ(l["n_neurons"].GetInt64(), want.layers[k].n_neurons);
      EXPECT_EQ(l["groups"].GetInt64(), static_cast<std::int64_t>(want.layers[k].groups.size()));
      EXPECT_EQ(l["dead"].GetInt64(), want.layers[k].dead_count());
      EXPECT_EQ(l["dropped_batches"].GetInt64(), want.layers[k].counters.dropped_batches);
      EXPECT_DOUBLE_EQ(l["mean_cohesion"].GetDouble(), want.layers[k].mean_cohesion());
      // Each group with its scores and loose mark (a NaN min_member_correlation is null).
      const auto& groups = want.layers[k].groups;
      ASSERT_EQ(l["groups_detail"].Size(), groups.size());
      std::int64_t loose = 0;
      for (rapidjson::SizeType g = 0; g < groups.size(); ++g) {
        const auto& got = l["groups_detail"][g];
        EXPECT_EQ(got["group_id"].GetInt(), groups[g].group_id);
        EXPECT_EQ(got["size"].GetInt64(), static_cast<std::int64_t>(groups[g].group_size()));
        EXPECT_DOUBLE_EQ(got["cohesion"].GetDouble(), groups[g].cohesion_score);
        if (std::isnan(groups[g].min_member_correlation)) EXPECT_TRUE(got["min_member_correlation"].IsNull());
        else EXPECT_DOUBLE_EQ(got["min_member_correlation"].GetDouble(), groups[g].min_member_correlation);
        EXPECT_EQ(got["loose"].GetBool(), groups[g].loose);
        loose += groups[g].loose;
      }
      EXPECT_EQ(l["loose_groups"].GetInt64(), loose);
    }
  }
}

TEST(Inspect, EmptyRunIsValidJson) {
  const auto path = test_dir() + "/run.h5";
  write_sample_run(path, 0);
  const auto json = inspect(path, true);
  ASSERT_EQ(json.exit_code, 0) << json.err;
  rapidjson::Document doc;
  doc.Parse(json.out.c_str());
  ASSERT_FALSE(doc.HasParseError()) << json.out;
  EXPECT_EQ(doc["snapshots"].Size(), 0u);
}

void expect_one_line_error(const ProcessResult& r, const std::string& what, const std::string& part) {
  EXPECT_EQ(r.signal, 0) << what;
  EXPECT_EQ(r.exit_code, 2) << what << ": " << r.err;
  EXPECT_EQ(count_lines(r.err), 1u) << what << ": " << r.err;
  EXPECT_EQ(r.err.rfind("neuronmap: ", 0), 0u) << what << ": " << r.err;
  EXPECT_EQ(r.err.find("HDF5-DIAG"), std::string::npos) << what;
  EXPECT_NE(r.err.find(part), std::string::npos) << what << ": " << r.err;
  EXPECT_EQ(r.out, "") << what;
}

TEST(Inspect, BadFilesGiveOneLineAndExitTwo) {
  const auto dir = test_dir();
  const auto good = dir + "/good.h5";
  write_sample_run(good, 3);
  write_truncated_copy(good, dir + "/truncated.h5", fs::file_size(good) * 2 / 3);
  write_foreign_hdf5(dir + "/foreign.h5");
  write_text(dir + "/text.h5", "this is not HDF5\n");
  write_text(dir + "/empty.h5", "");
  fs::copy_file(good, dir + "/newer.h5");
  set_format_version(dir + "/newer.h5", kFormatVersion + 7);

  expect_one_line_error(inspect(dir + "/missing.h5"), "missing", "does not exist");
  expect_one_line_error(inspect(dir + "/truncated.h5"), "truncated", "truncated");
  expect_one_line_error(inspect(dir + "/truncated.h5", true), "truncated --json", "truncated");
  expect_one_line_error(inspect(dir + "/foreign.h5"), "foreign", "not a NeuronMap run");
  expect_one_line_error(inspect(dir + "/text.h5"), "text", "not an HDF5 file");
  expect_one_line_error(inspect(dir + "/empty.h5"), "empty", "empty");
  expect_one_line_error(inspect(dir + "/newer.h5"), "newer", "newer");
  expect_one_line_error(inspect(dir), "directory", "directory");

  const auto usage = run_process({NEURONMAP_CLI, "inspect"}, 60);
  EXPECT_EQ(usage.exit_code, 1) << "a missing argument is a usage error";
}

// Every verb that reads an HDF5 file (a run, a matrix, a model's input), given a missing, empty, text,
// truncated, foreign, newer-format and byte-flipped file: exit 2 with one line on stderr (exit 0 is
// allowed for a flipped byte the file survives), never a signal, never an HDF5 error stack.
TEST(Cli, EveryVerbRefusesBadFilesWithOneLine) {
  const auto dir = test_dir();
  const auto good = dir + "/good.h5";
  write_sample_run(good, 3);
  write_truncated_copy(good, dir + "/truncated.h5", fs::file_size(good) / 2);
  write_foreign_hdf5(dir + "/foreign.h5");
  write_text(dir + "/text.h5", "this is not HDF5\n");
  write_text(dir + "/empty.h5", "");
  fs::copy_file(good, dir + "/newer.h5");
  set_format_version(dir + "/newer.h5", kFormatVersion + 7);
  {
    std::ifstream in(good, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (std::size_t k = 0; k < 6; ++k) bytes[97 + 613 * k] ^= 0x5a;  // superblock and first object headers
    std::ofstream(dir + "/flipped.h5", std::ios::binary) << bytes;
  }
  const std::vector<std::string> files = {"missing", "empty", "text", "truncated", "foreign", "newer", "flipped"};
  // "@" stands for the bad file. capture and layers read it as the model's input (/input).
  const std::string model = std::string(NEURONMAP_SOURCE_DIR) + "/tests/data/torchscript/convnet.pt";
  const std::vector<std::vector<std::string>> verbs = {
      {"inspect", "@"},
      {"inspect", "@", "--json"},
      {"heads", "@"},
      {"heads", "@", "--json"},
      {"report", "@", "--out", dir + "/report", "--no-dashboard", "-q"},
      {"groups", "@", "--dataset", "/data/corr"},
      {"compare", "@", good},
      {"compare", good, "@"},
      {"capture", model, "--input", "@", "--layers", "fc", "--out", dir + "/capture.h5"},
      {"layers", model, "--input", "@"}};
  int cases = 0;
  for (const auto& verb : verbs) {
    for (const auto& name : files) {
      std::vector<std::string> argv = {NEURONMAP_CLI};
      std::string what;
      for (const auto& a : verb) {
        argv.push_back(a == "@" ? dir + "/" + name + ".h5" : a);
        what += (a == "@" ? "<" + name + ">" : fs::path(a).filename().string()) + " ";
      }
      const auto r = run_process(argv, 120);
      ++cases;
      EXPECT_FALSE(r.timed_out) << what;
      EXPECT_EQ(r.signal, 0) << what;
      EXPECT_EQ(r.err.find("HDF5-DIAG"), std::string::npos) << what;
      if (name == "flipped" && r.exit_code == 0) continue;
      EXPECT_EQ(r.exit_code, 2) << what << ": " << r.err << r.out.substr(0, 300);
      EXPECT_EQ(count_lines(r.err), 1u) << what << ": " << r.err;
      EXPECT_EQ(r.err.rfind("neuronmap: ", 0), 0u) << what << ": " << r.err;
    }
  }
  std::printf("CLI: %d verb x bad-file cases\n", cases);
}

// The CLI never loads LibTorch (inspect starts in milliseconds); `capture` and `layers` load it from a
// module next to the CLI's library directory. Without that module they fail with one clear line, and
// the other verbs still work.
TEST(Cli, StartsWithoutLibTorchAndNamesAMissingTorchScriptModule) {
  const auto libraries = run_process({"/usr/bin/ldd", NEURONMAP_CLI}, 60);
  ASSERT_EQ(libraries.exit_code, 0) << libraries.err;
  EXPECT_EQ(libraries.out.find("libtorch"), std::string::npos) << libraries.out;
  EXPECT_EQ(libraries.out.find("libc10"), std::string::npos) << libraries.out;

  const auto dir = test_dir();
  const auto good = dir + "/good.h5";
  write_sample_run(good, 3);
  fs::create_directories(dir + "/bin");
  const auto cli = dir + "/bin/neuronmap";  // a copy with no <libdir>/neuronmap/ module beside it
  fs::copy_file(NEURONMAP_CLI, cli);
  fs::permissions(cli, fs::perms::owner_all);
  const std::string model = std::string(NEURONMAP_SOURCE_DIR) + "/tests/data/torchscript/convnet.pt";
  const auto r = run_process({cli, "layers", model}, 120);
  EXPECT_EQ(r.exit_code, 2) << r.err << r.out;
  EXPECT_EQ(count_lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("cannot load the TorchScript verbs (they need LibTorch)"), std::string::npos) << r.err;
  EXPECT_EQ(run_process({cli, "inspect", good}, 120).exit_code, 0);
}

// Damaged files must give exit 0 or 2 with at most one line, never a crash (inspect reads in a child).
TEST(Inspect, SurvivesFlippedBytes) {
  const auto dir = test_dir();
  const auto good = dir + "/good.h5";
  write_sample_run(good, 6);
  const auto size = fs::file_size(good);
  std::ifstream in(good, std::ios::binary);
  const std::string original((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::mt19937 rng(7);
  int ok = 0, refused = 0;
  const int trials = 10;
  for (int t = 0; t < trials; ++t) {
    std::string damaged = original;
    // Half the trials hit the first 4 KiB, where the superblock and most object headers live.
    const std::uint64_t span = t % 2 == 0 ? std::min<std::uint64_t>(size, 4096) : size;
    for (int k = 0; k < 1 + t % 4; ++k)
      damaged[std::uniform_int_distribution<std::uint64_t>(0, span - 1)(rng)] ^=
          static_cast<char>(1 << std::uniform_int_distribution<int>(0, 7)(rng));
    const auto path = dir + "/flipped_" + std::to_string(t) + ".h5";
    std::ofstream(path, std::ios::binary) << damaged;
    const auto r = run_process({NEURONMAP_CLI, "inspect", path, "--timeout", "5"}, 60);
    ASSERT_FALSE(r.timed_out) << path;
    EXPECT_EQ(r.signal, 0) << path;
    EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 2) << path << ": " << r.err;
    EXPECT_LE(count_lines(r.err), 1u) << path << ": " << r.err;
    EXPECT_EQ(r.err.find("HDF5-DIAG"), std::string::npos) << path;
    if (r.exit_code == 0) {
      EXPECT_NE(r.out.find("snapshots (6)"), std::string::npos) << path << "\n" << r.out;
    }
    (r.exit_code == 0 ? ok : refused) += 1;
  }
  std::printf("flipped bytes: %d files read, %d refused with one line\n", ok, refused);
}

}  // namespace
}  // namespace neuronmap::test
