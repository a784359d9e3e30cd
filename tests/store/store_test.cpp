// The run file in one process: round trips, the reader's errors, check_path, and a live reader.
#include <gtest/gtest.h>

#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "neuronmap/errors.hpp"
#include "neuronmap/run.hpp"
#include "neuronmap/version.hpp"
#include "process.hpp"
#include "sample_run.hpp"
#include "store/run_file.hpp"
#include "test_files.hpp"

namespace neuronmap::test {
namespace {

using detail::RunReader;
using detail::RunWriter;

template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("WRONG EXCEPTION TYPE: ") + e.what();
  }
  return "NO EXCEPTION";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(RunFile, RoundTripsSnapshotsBitForBit) {
  const auto path = test_dir() + "/run.h5";
  const std::int64_t n = 7;
  write_sample_run(path, n);

  RunReader reader(path);
  const auto& info = reader.info();
  const auto expected = sample_info();
  EXPECT_EQ(info.format_version, kFormatVersion);
  EXPECT_EQ(info.library_version, expected.library_version);
  EXPECT_EQ(info.torch_version, expected.torch_version);
  EXPECT_EQ(info.device, expected.device);
  EXPECT_EQ(info.created, expected.created);
  EXPECT_EQ(info.options_json, expected.options_json);
  EXPECT_EQ(info.tag_names, expected.tag_names);
  ASSERT_EQ(info.layers.size(), expected.layers.size());
  for (std::size_t i = 0; i < info.layers.size(); ++i) {
    EXPECT_EQ(info.layers[i].name, expected.layers[i].name);
    EXPECT_EQ(info.layers[i].module_type, expected.layers[i].module_type);
    EXPECT_EQ(info.layers[i].reduction, expected.layers[i].reduction);
  }

  ASSERT_EQ(reader.size(), n);
  for (std::int64_t i = 0; i < n; ++i) {
    const auto want = sample_snapshot(i);
    EXPECT_EQ(difference(reader.snapshot(i), want), "") << "snapshot " << i;
    const auto summary = reader.summary(i);
    EXPECT_EQ(summary.epoch, want.epoch);
    EXPECT_TRUE(same_bits(summary.loss, want.loss));
    ASSERT_EQ(summary.layers.size(), want.layers.size());
    for (std::size_t k = 0; k < want.layers.size(); ++k) {
      const auto& s = summary.layers[k];
      const auto& w = want.layers[k];
      EXPECT_EQ(s.name, w.name);
      EXPECT_EQ(s.n_neurons, w.n_neurons);
      EXPECT_EQ(s.samples, w.samples);
      EXPECT_EQ(s.groups, static_cast<std::int64_t>(w.groups.size()));
      EXPECT_DOUBLE_EQ(s.mean_cohesion, w.mean_cohesion());
      EXPECT_EQ(s.dead, w.dead_count());
      EXPECT_EQ(s.counters.dropped_batches, w.counters.dropped_batches);
      EXPECT_EQ(s.counters.captured_batches, w.counters.captured_batches);
    }
  }
  // The sample covers what the schema must carry: NaN loss, an empty matrix, a layer with no neurons,
  // a layer not listed in RunInfo, groups with and without patterns.
  EXPECT_TRUE(std::isnan(reader.snapshot(3).loss));
  EXPECT_TRUE(reader.snapshot(0).layers[2].correlation.empty());
  EXPECT_EQ(reader.snapshot(0).layers[3].n_neurons, 0);
  EXPECT_EQ(reader.snapshot(1).layers.back().name, "extra.not_in_info");

  // ... and what format_version 2 added: empty and multi-lineage events, NaN and empty vectors.
  for (std::int64_t i = 0; i < n; ++i) {
    auto header = sample_snapshot(i);
    header.layers.clear();
    EXPECT_EQ(difference(reader.snapshot_header(i), header), "") << "snapshot " << i;
  }
  const auto s3 = reader.snapshot(3);
  ASSERT_EQ(s3.events.size(), 3u);
  EXPECT_EQ(s3.events[2].lineages.size(), 3u);
  EXPECT_TRUE(std::isnan(s3.events[2].loss_change));
  EXPECT_TRUE(reader.snapshot(2).events[0].lineages.empty());
  EXPECT_TRUE(reader.snapshot(0).events.empty());
  EXPECT_EQ(reader.snapshot(2).phase.size(), sample_snapshot(2).phase.size()) << "phases are not cut to 32 bytes";
  EXPECT_TRUE(reader.snapshot(0).phase.empty());
  EXPECT_TRUE(reader.snapshot(2).layer_cka.empty());
  EXPECT_TRUE(std::isnan(s3.layer_cka[3]));
  EXPECT_TRUE(reader.snapshot(4).losses.empty());
  EXPECT_TRUE(std::isnan(s3.losses[2]));  // epoch 18
  EXPECT_TRUE(std::isnan(reader.snapshot(0).layers[1].cka_previous));
  EXPECT_TRUE(reader.snapshot(0).layers[0].mean_abs.empty());
  EXPECT_FALSE(reader.snapshot(0).layers[1].mean_abs.empty());
  EXPECT_TRUE(reader.snapshot(0).layers[2].reservoir.empty());
  const auto s1 = reader.snapshot(1);  // kept: a reference into the temporary would dangle (ASan found it)
  const auto& head = s1.layers[3];     // reservoir ids without tags and losses
  EXPECT_FALSE(head.reservoir_ids.empty());
  EXPECT_TRUE(head.reservoir_tags.empty() && head.reservoir_loss.empty());
  EXPECT_EQ(head.reservoir.size(), head.reservoir_ids.size() * static_cast<std::size_t>(head.n_neurons));
  int nan_losses = 0, untracked = 0, tracked = 0, nan_correlations = 0;
  for (std::int64_t i = 0; i < n; ++i)
    for (const auto& l : reader.snapshot(i).layers) {
      for (float x : l.reservoir_loss) nan_losses += std::isnan(x);
      for (const auto& g : l.groups) {
        (g.lineage_id < 0 ? untracked : tracked) += 1;
        nan_correlations += std::isnan(g.loss_correlation);
      }
    }
  EXPECT_GT(nan_losses, 0);
  EXPECT_GT(untracked, 0);
  EXPECT_GT(tracked, 0);
  EXPECT_GT(nan_correlations, 0);

  // ... and what format_version 3 added: the reference batch's rows, absent on some layers, NaN kept.
  const auto s0 = reader.snapshot(0);
  EXPECT_TRUE(s0.layers[2].reference.empty());
  EXPECT_EQ(s0.layers[2].reference_rows, 0);
  ASSERT_GT(s0.layers[1].reference_rows, 0);
  EXPECT_EQ(s0.layers[1].reference.size(),
            static_cast<std::size_t>(s0.layers[1].reference_rows * s0.layers[1].n_neurons));
  EXPECT_TRUE(std::isnan(s0.layers[0].reference[0]));
  EXPECT_EQ(reader.summary(0).layers[1].reference_rows, s0.layers[1].reference_rows);

  // ... and what format_version 4 added: each group's min_member_correlation (NaN and -0.0 kept) and
  // loose mark, also in the summaries.
  EXPECT_TRUE(std::isnan(reader.snapshot(1).layers[0].groups.at(0).min_member_correlation));
  EXPECT_TRUE(std::signbit(reader.snapshot(2).layers[1].groups.at(0).min_member_correlation));
  int loose = 0, tight = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const auto snapshot = reader.snapshot(i);
    const auto summary = reader.summary(i);
    for (std::size_t k = 0; k < snapshot.layers.size(); ++k) {
      const auto& groups = snapshot.layers[k].groups;
      const auto& summaries = summary.layers[k].group_summaries;
      ASSERT_EQ(summaries.size(), groups.size());
      for (std::size_t g = 0; g < groups.size(); ++g) {
        (groups[g].loose ? loose : tight) += 1;
        EXPECT_EQ(summaries[g].group_id, groups[g].group_id);
        EXPECT_EQ(summaries[g].size, static_cast<std::int64_t>(groups[g].group_size()));
        EXPECT_TRUE(same_bits(summaries[g].cohesion_score, groups[g].cohesion_score));
        EXPECT_TRUE(same_bits(summaries[g].min_member_correlation, groups[g].min_member_correlation));
        EXPECT_EQ(summaries[g].loose, groups[g].loose);
      }
    }
  }
  EXPECT_GT(loose, 0);
  EXPECT_GT(tight, 0);
}

/// Decompresses one of the stored run files of older format versions (tests/store/data) into `path`.
void gunzip_fixture(const std::string& name, const std::string& path) {
  gzFile in = gzopen((std::string(NEURONMAP_SOURCE_DIR "/tests/store/data/") + name).c_str(), "rb");
  ASSERT_NE(in, nullptr) << name;
  std::ofstream out(path, std::ios::binary);
  char buffer[65536];
  int n = 0;
  while ((n = gzread(in, buffer, sizeof buffer)) > 0) out.write(buffer, n);
  ASSERT_EQ(n, 0) << "cannot decompress " << name;
  gzclose(in);
}

/// tests/store/data/run_v<version>.h5.gz decompressed into `dir`; returns the file's path.
std::string unpacked_fixture(const std::string& dir, int version) {
  const std::string name = "run_v" + std::to_string(version) + ".h5";
  const std::string path = dir + "/" + name;
  gunzip_fixture(name + ".gz", path);
  return path;
}

// tests/store/data/run_v1.h5.gz: 3 snapshots of sample_snapshot() written by the format_version 1
// writer (commit 89106c9). Version 2 readers read them, with the fields version 2 added at defaults.
TEST(RunFile, ReadsVersion1Files) {
  RunReader reader(unpacked_fixture(test_dir(), 1));
  EXPECT_EQ(reader.info().format_version, 1);
  EXPECT_TRUE(reader.info().tag_names.empty());
  EXPECT_EQ(reader.info().layers.size(), sample_info().layers.size());
  ASSERT_EQ(reader.size(), 3);
  for (std::int64_t i = 0; i < reader.size(); ++i) {
    const auto got = reader.snapshot(i);
    EXPECT_EQ(difference(got, as_version1(sample_snapshot(i))), "") << "snapshot " << i;
    EXPECT_EQ(reader.summary(i).layers.size(), got.layers.size());
    auto header = got;
    header.layers.clear();
    EXPECT_EQ(difference(reader.snapshot_header(i), header), "");
    for (const auto& l : got.layers) {
      EXPECT_TRUE(std::isnan(l.cka_previous));
      for (const auto& g : l.groups) EXPECT_EQ(g.lineage_id, -1);
    }
  }
}

// tests/store/data/run_v2.h5.gz: 3 snapshots of sample_snapshot() written by the format_version 2
// writer (`store_writer_child PATH --count 3` at commit 55503fa). Read with the reference rows empty.
TEST(RunFile, ReadsVersion2Files) {
  RunReader reader(unpacked_fixture(test_dir(), 2));
  EXPECT_EQ(reader.info().format_version, 2);
  EXPECT_EQ(reader.info().tag_names, sample_info().tag_names);
  ASSERT_EQ(reader.size(), 3);
  for (std::int64_t i = 0; i < reader.size(); ++i) {
    const auto got = reader.snapshot(i);
    EXPECT_EQ(difference(got, as_version2(sample_snapshot(i))), "") << "snapshot " << i;
    for (const auto& l : got.layers) EXPECT_TRUE(l.reference.empty() && l.reference_rows == 0);
    for (const auto& l : reader.summary(i).layers) EXPECT_EQ(l.reference_rows, 0);
    auto header = got;
    header.layers.clear();
    EXPECT_EQ(difference(reader.snapshot_header(i), header), "");
  }
  // The fixture really is version 2 content: the version 3 sample differs from it.
  EXPECT_NE(difference(reader.snapshot(0), sample_snapshot(0)), "");
}

// tests/store/data/run_v3.h5.gz: 3 snapshots of sample_snapshot() written by the format_version 3
// writer (`store_writer_child PATH --count 3` at commit 66741af). Its groups have no stored
// min_member_correlation: version 4 readers give NaN (not recomputed) and no group is loose.
TEST(RunFile, ReadsVersion3Files) {
  const auto dir = test_dir();
  const auto path = unpacked_fixture(dir, 3);
  RunReader reader(path);
  EXPECT_EQ(reader.info().format_version, 3);
  ASSERT_EQ(reader.size(), 3);
  std::size_t groups = 0;
  for (std::int64_t i = 0; i < reader.size(); ++i) {
    const auto got = reader.snapshot(i);
    EXPECT_EQ(difference(got, as_version3(sample_snapshot(i))), "") << "snapshot " << i;
    for (const auto& l : got.layers)
      for (const auto& g : l.groups) {
        EXPECT_TRUE(std::isnan(g.min_member_correlation));
        EXPECT_FALSE(g.loose);
        ++groups;
      }
    for (const auto& l : reader.summary(i).layers) {
      EXPECT_EQ(l.loose_groups(), 0);
      for (const auto& g : l.group_summaries) EXPECT_TRUE(std::isnan(g.min_member_correlation));
    }
  }
  EXPECT_GT(groups, 0u);
  // The fixture really is version 3 content: what a version 4 file holds differs from it in those fields.
  EXPECT_NE(difference(reader.snapshot(0), as_version4(sample_snapshot(0))).find("min_member_correlation"),
            std::string::npos);

  // Labelled version 4, the same file lacks the fields version 4 readers require: damaged, not zeros.
  const auto relabelled = dir + "/relabelled.h5";
  fs::copy_file(path, relabelled);
  set_format_version(relabelled, 4);
  const auto message = message_of<FormatError>([&] { RunReader r(relabelled); });
  EXPECT_TRUE(contains(message, "/data/groups has an unexpected type")) << message;
}

// tests/store/data/run_v4.h5.gz: 3 snapshots of sample_snapshot() written by the format_version 4
// writer (`store_writer_child PATH --count 3` at commit bc53b99, the last one before format 5). Version 5
// readers give its layers no heads and no batches left out for the overhead budget.
TEST(RunFile, ReadsVersion4Files) {
  const auto dir = test_dir();
  const auto path = unpacked_fixture(dir, 4);
  RunReader reader(path);
  EXPECT_EQ(reader.info().format_version, 4);
  ASSERT_EQ(reader.size(), 3);
  for (std::int64_t i = 0; i < reader.size(); ++i) {
    const auto got = reader.snapshot(i);
    EXPECT_EQ(difference(got, as_version4(sample_snapshot(i))), "") << "snapshot " << i;
    for (const auto& l : got.layers) {
      EXPECT_TRUE(l.heads.empty());
      EXPECT_EQ(l.counters.budget_skipped_batches, 0);
    }
    auto header = got;
    header.layers.clear();
    EXPECT_EQ(difference(reader.snapshot_header(i), header), "");
  }
  // The fixture really is version 4 content: the version 5 sample has fields it lacks.
  EXPECT_NE(difference(reader.snapshot(0), sample_snapshot(0)), "");
  EXPECT_EQ(difference(as_version4(reader.snapshot(0)), as_version4(sample_snapshot(0))), "");

  // Labelled version 5, the same file lacks /data/heads and the layer rows' new fields: damaged, not zeros.
  const auto relabelled = dir + "/relabelled.h5";
  fs::copy_file(path, relabelled);
  set_format_version(relabelled, 5);
  const auto message = message_of<FormatError>([&] { RunReader r(relabelled); });
  EXPECT_TRUE(contains(message, "dataset /layer_rows has an unexpected type")) << message;
}

TEST(RunFile, PublicRunReadsTheSameFile) {
  const auto path = test_dir() + "/run.h5";
  write_sample_run(path, 2);
  auto run = Run::open(path);
  ASSERT_EQ(run.size(), 2);
  EXPECT_EQ(difference(run.snapshot(1), sample_snapshot(1)), "");
  EXPECT_EQ(run.refresh(), 2);
  EXPECT_THROW(run.snapshot(2), UsageError);
  EXPECT_THROW(run.summary(-1), UsageError);
}

TEST(RunFile, ZeroSnapshotsAndZeroLayers) {
  const auto dir = test_dir();
  {
    RunWriter writer(dir + "/empty.h5", sample_info(), false);
    EXPECT_EQ(writer.size(), 0);
  }  // the destructor closes
  RunReader reader(dir + "/empty.h5");
  EXPECT_EQ(reader.size(), 0);
  EXPECT_EQ(reader.refresh(), 0);
  EXPECT_EQ(reader.info().layers.size(), 4u);
  EXPECT_THROW(reader.snapshot(0), UsageError);

  RunInfo bare;  // nothing but defaults
  {
    RunWriter writer(dir + "/bare.h5", bare, false);
    Snapshot no_layers;
    no_layers.epoch = 3;
    no_layers.loss = std::nan("");
    writer.append(no_layers);
    EXPECT_EQ(writer.size(), 1);
    writer.close();
    writer.close();  // idempotent
    EXPECT_THROW(writer.append(no_layers), FileError);
  }
  RunReader bare_reader(dir + "/bare.h5");
  EXPECT_TRUE(bare_reader.info().layers.empty());
  EXPECT_EQ(bare_reader.info().library_version, NEURONMAP_VERSION_STRING);
  ASSERT_EQ(bare_reader.size(), 1);
  EXPECT_EQ(bare_reader.snapshot(0).epoch, 3);
  EXPECT_TRUE(bare_reader.snapshot(0).layers.empty());
  EXPECT_TRUE(std::isnan(bare_reader.summary(0).loss));
}

TEST(RunFile, RejectsInconsistentSnapshotsWithoutWriting) {
  const auto path = test_dir() + "/run.h5";
  RunWriter writer(path, sample_info(), false);
  auto bad = sample_snapshot(0);
  bad.layers[1].mean.pop_back();
  EXPECT_THROW(writer.append(bad), UsageError);
  bad = sample_snapshot(0);
  bad.layers[0].correlation.resize(3);
  EXPECT_THROW(writer.append(bad), UsageError);
  bad = sample_snapshot(0);
  bad.layers[0].output_shape.assign(9, 1);
  EXPECT_THROW(writer.append(bad), UsageError);
  bad = sample_snapshot(0);
  bad.layers[1].mean_abs.pop_back();
  EXPECT_THROW(writer.append(bad), UsageError);
  bad = sample_snapshot(0);
  bad.losses.pop_back();
  EXPECT_THROW(writer.append(bad), UsageError);
  bad = sample_snapshot(0);
  bad.layers[1].reference_rows += 1;  // rows x n_neurons no longer matches the data
  EXPECT_THROW(writer.append(bad), UsageError);
  EXPECT_EQ(writer.size(), 0);
  writer.append(sample_snapshot(0));
  writer.close();
  RunReader reader(path);
  ASSERT_EQ(reader.size(), 1);
  EXPECT_EQ(difference(reader.snapshot(0), sample_snapshot(0)), "");
}

TEST(RunFile, TruncatesLongGroupLabelsToTheirWidth) {
  const auto path = test_dir() + "/run.h5";
  auto s = sample_snapshot(2);
  ASSERT_FALSE(s.layers[1].groups.empty());
  s.layers[1].groups[0].learning_phase = std::string(40, 'p');
  {
    RunWriter writer(path, sample_info(), false);
    writer.append(s);
  }
  RunReader reader(path);
  EXPECT_EQ(reader.snapshot(0).layers[1].groups[0].learning_phase, std::string(32, 'p'));
}

TEST(CheckPath, CreatesMissingDirectories) {
  const auto dir = test_dir();
  const auto path = dir + "/a/b/c/run.h5";
  EXPECT_NO_THROW(RunWriter::check_path(path, false));
  EXPECT_TRUE(fs::is_directory(dir + "/a/b/c"));
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  RunWriter writer(dir + "/x/y/run.h5", sample_info(), false);  // the constructor does it too
  EXPECT_TRUE(fs::exists(dir + "/x/y/run.h5"));
}

TEST(CheckPath, RefusesAnExistingFileUnlessOverwrite) {
  const auto path = test_dir() + "/run.h5";
  write_sample_run(path, 2);
  const auto message = message_of<FileError>([&] { RunWriter::check_path(path, false); });
  EXPECT_TRUE(contains(message, "already exists")) << message;
  EXPECT_TRUE(contains(message, "Options{}.overwrite(true)")) << message;
  EXPECT_THROW(RunWriter(path, sample_info(), false), FileError);
  EXPECT_EQ(RunReader(path).size(), 2);  // refused: untouched

  EXPECT_NO_THROW(RunWriter::check_path(path, true));
  {
    RunWriter writer(path, sample_info(), true);
    writer.append(sample_snapshot(5));
  }
  RunReader reader(path);
  ASSERT_EQ(reader.size(), 1);
  EXPECT_EQ(difference(reader.snapshot(0), sample_snapshot(5)), "");
}

TEST(CheckPath, FailsClearlyOnUnwritablePlaces) {
  const auto dir = test_dir();
  write_text(dir + "/plain_file", "not a directory\n");

  auto message = message_of<FileError>([&] { RunWriter::check_path(dir + "/plain_file/run.h5", false); });
  EXPECT_TRUE(contains(message, "not a directory")) << message;
  message = message_of<FileError>([&] { RunWriter::check_path(dir + "/plain_file/sub/run.h5", false); });
  EXPECT_TRUE(contains(message, "cannot create the directory")) << message;
  message = message_of<FileError>([&] { RunWriter::check_path("/proc/neuronmap_store_test.h5", false); });
  EXPECT_TRUE(contains(message, "not writable")) << message;
  message = message_of<FileError>([&] { RunWriter::check_path("/proc/self/neuronmap/run.h5", false); });
  EXPECT_TRUE(contains(message, "cannot create")) << message;
  message = message_of<FileError>([&] { RunWriter::check_path(dir, true); });
  EXPECT_TRUE(contains(message, "is a directory")) << message;
  message = message_of<FileError>([&] { RunWriter::check_path("", false); });
  EXPECT_TRUE(contains(message, "empty")) << message;
  EXPECT_THROW(RunWriter(dir + "/plain_file/run.h5", sample_info(), false), FileError);
  EXPECT_EQ(message.find('\n'), std::string::npos);
}

TEST(Reader, RefusesMissingForeignNewerAndTruncatedFiles) {
  const auto dir = test_dir();
  const auto good = dir + "/good.h5";
  write_sample_run(good, 3);

  auto message = message_of<FileError>([&] { RunReader r(dir + "/missing.h5"); });
  EXPECT_TRUE(contains(message, "does not exist")) << message;
  EXPECT_EQ(message_of<FormatError>([&] { RunReader r(dir + "/missing.h5"); }).rfind("WRONG", 0), 0u)
      << "a missing file is not a format error";

  write_text(dir + "/text.h5", "epoch,loss\n5,0.1\n");
  message = message_of<FormatError>([&] { RunReader r(dir + "/text.h5"); });
  EXPECT_TRUE(contains(message, "not an HDF5 file")) << message;

  write_text(dir + "/empty.h5", "");
  message = message_of<FormatError>([&] { RunReader r(dir + "/empty.h5"); });
  EXPECT_TRUE(contains(message, "empty")) << message;

  write_foreign_hdf5(dir + "/foreign.h5");
  message = message_of<FormatError>([&] { RunReader r(dir + "/foreign.h5"); });
  EXPECT_TRUE(contains(message, "not a NeuronMap run")) << message;

  fs::copy_file(good, dir + "/newer.h5");
  set_format_version(dir + "/newer.h5", kFormatVersion + 1);
  message = message_of<FormatError>([&] { RunReader r(dir + "/newer.h5"); });
  EXPECT_TRUE(contains(message, "newer")) << message;
  set_format_version(dir + "/newer.h5", kFormatVersion);
  EXPECT_EQ(RunReader(dir + "/newer.h5").size(), 3);  // only the version made the difference

  write_truncated_copy(good, dir + "/truncated.h5", fs::file_size(good) / 2);
  message = message_of<FileError>([&] { RunReader r(dir + "/truncated.h5"); });
  EXPECT_TRUE(contains(message, "truncated")) << message;

  message = message_of<FileError>([&] { RunReader r(dir); });
  EXPECT_TRUE(contains(message, "directory")) << message;
}

/// The writer child's next line that is not "writing <i>"; "committed <i> <microseconds>" becomes
/// "committed <i>".
bool read_result(ChildProcess& writer, std::string& line) {
  do {
    if (!writer.read_line(line, 20000)) return false;
  } while (line.rfind("writing ", 0) == 0);
  if (line.rfind("committed ", 0) == 0) line = line.substr(0, line.find(' ', std::string("committed ").size()));
  return true;
}

// A writer in another process (SWMR allows no second opener of the file in the writer's process).
TEST(Reader, SeesCommittedSnapshotsOnlyAndGrowsOnRefresh) {
  const auto path = test_dir() + "/live.h5";
  ChildProcess writer({NEURONMAP_STORE_CHILD, path, "--count", "2", "--stdin"}, true);
  std::string line;
  ASSERT_TRUE(writer.read_line(line, 20000));
  ASSERT_EQ(line, "created");
  ASSERT_TRUE(read_result(writer, line));
  ASSERT_EQ(line, "committed 0");
  ASSERT_TRUE(read_result(writer, line));
  ASSERT_EQ(line, "committed 1");

  RunReader reader(path);
  ASSERT_EQ(reader.size(), 2);
  EXPECT_EQ(difference(reader.snapshot(1), sample_snapshot(1)), "");

  for (int next = 2; next < 5; ++next) {
    writer.write_stdin("more\n");
    ASSERT_TRUE(read_result(writer, line));
    ASSERT_EQ(line, "committed " + std::to_string(next));
    EXPECT_EQ(reader.size(), next) << "size changes only on refresh()";
    EXPECT_THROW(reader.snapshot(next), UsageError);
    EXPECT_EQ(reader.refresh(), next + 1);
    EXPECT_EQ(difference(reader.snapshot(next), sample_snapshot(next)), "") << "snapshot " << next;
    EXPECT_EQ(difference(reader.snapshot(0), sample_snapshot(0)), "");
  }
  writer.close_stdin();
  ASSERT_TRUE(read_result(writer, line));
  EXPECT_EQ(line, "closed");
  const int status = writer.wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(reader.refresh(), 5);
  EXPECT_EQ(RunReader(path).size(), 5);
}

}  // namespace
}  // namespace neuronmap::test
