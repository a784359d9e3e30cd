// `neuronmap serve` and `inspect --follow` against a writer process: incremental API and events, and
// the faults (writer killed, file replaced, truncated, damaged, deleted).
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "serve_support.hpp"
#include "test_dir.hpp"

namespace fs = std::filesystem;
using neuronmap::test::ChildProcess;
using neuronmap::test::eventually;
using neuronmap::test::EventStream;
using neuronmap::test::parse;
using neuronmap::test::Server;
using neuronmap::test::Writer;

namespace {

std::string test_dir() { return neuronmap::test::fresh_test_dir("serve_tmp"); }

std::string state_of(const Server& server) {
  const auto s = server.status();
  return s.IsObject() ? s["state"].GetString() : "";
}

std::int64_t snapshots_of(const Server& server) {
  const auto s = server.status();
  return s.IsObject() ? s["snapshots"].GetInt64() : -1;
}

std::vector<std::int64_t> indices(const std::string& json_array) {
  std::vector<std::int64_t> out;
  const auto d = parse(json_array);
  if (!d.IsArray()) return {-1};
  for (const auto& s : d.GetArray()) out.push_back(s["index"].GetInt64());
  return out;
}

}  // namespace

TEST(Serve, ApiAndEventsFollowEveryCommitOnceAndInOrder) {
  const std::string path = test_dir() + "/run.h5";
  Writer writer(path, 2);
  Server server(path);

  const auto run = parse(server.get("/api/run").second);
  ASSERT_TRUE(run.IsObject());
  EXPECT_EQ(std::string(run["file"].GetString()), path);
  EXPECT_EQ(run["layers"].GetArray().Size(), 4u);
  EXPECT_EQ(run["generation"].GetUint64(), 0u);
  EXPECT_EQ(indices(server.get("/api/snapshots").second), (std::vector<std::int64_t>{0, 1}));

  EventStream events(server.port(), "/events?after=0");
  ASSERT_TRUE(eventually([&] { return !events.of_type("status").empty(); }));
  for (int k = 0; k < 5; ++k) writer.commit();
  ASSERT_TRUE(eventually([&] { return events.of_type("snapshot").size() >= 6; })) << events.of_type("snapshot").size();
  ASSERT_TRUE(eventually([&] { return snapshots_of(server) == 7; }));
  const auto got = events.of_type("snapshot");
  ASSERT_EQ(got.size(), 6u);
  for (std::size_t k = 0; k < got.size(); ++k) {
    EXPECT_EQ(got[k].id, std::to_string(k + 1));
    const auto s = parse(got[k].data);
    ASSERT_TRUE(s.IsObject());
    EXPECT_EQ(s["index"].GetInt64(), static_cast<std::int64_t>(k + 1));
    EXPECT_TRUE(s.HasMember("layers") && s.HasMember("events") && s.HasMember("live_layers"));
  }
  EXPECT_EQ(indices(server.get("/api/snapshots?after=4").second), (std::vector<std::int64_t>{5, 6}));
  EXPECT_EQ(indices(server.get("/api/snapshots?after=6").second), (std::vector<std::int64_t>{}));
  const auto detail = parse(server.get("/api/detail?index=6").second);
  ASSERT_TRUE(detail.IsObject());
  EXPECT_EQ(detail["index"].GetInt64(), 6);
  EXPECT_EQ(detail["layers"].GetArray().Size(), 4u);
  EXPECT_EQ(server.get("/api/detail?index=7").first, 404);
  const auto status = server.status();
  EXPECT_TRUE(status["writer"]["active"].GetBool());
  EXPECT_EQ(status["writer"]["pid"].GetInt64(), writer.process().pid());
  // The page: the dashboard with its live script.
  const auto page = server.get("/");
  EXPECT_EQ(page.first, 200);
  EXPECT_NE(page.second.find("/assets/live.js"), std::string::npos);
  EXPECT_EQ(server.get("/assets/live.js").first, 200);
  // Served files are the page, its script and the API: the run file itself is not downloadable.
  EXPECT_EQ(server.get("/run.h5").first, 404);
  EXPECT_EQ(server.get("/" + path).first, 404);
}

TEST(Serve, WriterKilledKeepsTheLastGoodStateAndSaysTheWriterStopped) {
  const std::string path = test_dir() + "/run.h5";
  Writer writer(path, 3);
  Server server(path);
  ASSERT_TRUE(eventually([&] { return server.status()["writer"]["active"].GetBool(); }));
  writer.process().kill(SIGKILL);
  writer.process().wait();
  ASSERT_TRUE(eventually([&] { return !server.status()["writer"]["active"].GetBool(); }));
  EXPECT_EQ(state_of(server), "ok");
  EXPECT_EQ(indices(server.get("/api/snapshots").second), (std::vector<std::int64_t>{0, 1, 2}));
  EXPECT_EQ(server.get("/api/detail?index=2").first, 200);
}

TEST(Serve, ReplacedFileStartsANewGenerationAndTellsThePageToReload) {
  const std::string path = test_dir() + "/run.h5";
  { Writer first(path, 3); }
  Server server(path);
  ASSERT_EQ(snapshots_of(server), 3);
  EventStream events(server.port(), "/events?generation=0");
  ASSERT_TRUE(eventually([&] { return !events.of_type("status").empty(); }));
  Writer second(path, 1);  // a new run renamed into place
  ASSERT_TRUE(eventually([&] { return !events.of_type("reload").empty(); }));
  EXPECT_TRUE(eventually([&] { return events.finished(); }));
  EXPECT_EQ(server.status()["generation"].GetUint64(), 1u);
  // The new file may have been seen before its first commit.
  ASSERT_TRUE(eventually([&] { return snapshots_of(server) == 1; }));
  EXPECT_EQ(indices(server.get("/api/snapshots").second), (std::vector<std::int64_t>{0}));
  EXPECT_EQ(server.get("/api/snapshots?generation=0").first, 409);
  EXPECT_EQ(server.get("/api/snapshots?generation=1").first, 200);
  EXPECT_EQ(parse(server.get("/api/run").second)["generation"].GetUint64(), 1u);
  second.commit();
  EXPECT_TRUE(eventually([&] { return snapshots_of(server) == 2; }));
}

TEST(Serve, TruncatedFileShowsAnErrorAndKeepsServingTheLastGoodState) {
  const std::string path = test_dir() + "/run.h5";
  { Writer writer(path, 3); }
  Server server(path);
  ASSERT_EQ(snapshots_of(server), 3);
  const auto before = server.get("/api/snapshots").second;
  fs::resize_file(path, fs::file_size(path) / 2);
  ASSERT_TRUE(eventually([&] { return state_of(server) == "error"; }));
  const std::string message = server.status()["message"].GetString();
  EXPECT_TRUE(message.find("shrank") != std::string::npos || message.find("truncated") != std::string::npos ||
              message.find("damaged") != std::string::npos)
      << message;
  EXPECT_EQ(server.get("/api/snapshots").second, before);
  EXPECT_EQ(snapshots_of(server), 3);
  EXPECT_TRUE(server.alive());
}

TEST(Serve, DamagedFileShowsAnErrorAndKeepsServingTheLastGoodState) {
  const std::string path = test_dir() + "/run.h5";
  { Writer writer(path, 3); }
  Server server(path);
  ASSERT_EQ(snapshots_of(server), 3);
  const auto before = server.get("/api/snapshots").second;
  {
    // Garbage over the superblock: same size, a new mtime, no writer holding the lock.
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    const std::string garbage(512, '\x5a');
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  ASSERT_TRUE(eventually([&] { return state_of(server) == "error"; }));
  EXPECT_EQ(server.get("/api/snapshots").second, before);
  EXPECT_TRUE(server.alive());
}

TEST(Serve, DeletedFileSaysSoAndWaitsForItToReappear) {
  const std::string path = test_dir() + "/run.h5";
  { Writer writer(path, 2); }
  Server server(path);
  ASSERT_EQ(snapshots_of(server), 2);
  fs::remove(path);
  ASSERT_TRUE(eventually([&] { return state_of(server) == "deleted"; }));
  EXPECT_EQ(indices(server.get("/api/snapshots").second), (std::vector<std::int64_t>{0, 1}));
  Writer again(path, 1);
  ASSERT_TRUE(eventually([&] { return state_of(server) == "ok" && snapshots_of(server) == 1; }));
  EXPECT_EQ(server.status()["generation"].GetUint64(), 1u);
}

TEST(Serve, WaitsForAFileThatDoesNotExistYet) {
  const std::string path = test_dir() + "/later.h5";
  Server server(path);
  EXPECT_EQ(state_of(server), "waiting");
  EXPECT_EQ(server.get("/api/run").first, 503);
  EXPECT_EQ(server.get("/").first, 200);
  Writer writer(path, 2);
  ASSERT_TRUE(eventually([&] { return state_of(server) == "ok" && snapshots_of(server) == 2; }));
  EXPECT_EQ(server.get("/api/run").first, 200);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST(Serve, CacheStaysWithinItsByteBudget) {
  const std::string path = test_dir() + "/run.h5";
  { Writer writer(path, 40); }
  Server server(path, {"--cache-mb", "1"});
  for (int i = 0; i < 40; ++i) ASSERT_EQ(server.get("/api/detail?index=" + std::to_string(i)).first, 200);
  const auto status = server.status();
  EXPECT_LE(status["cache_bytes"].GetUint64(), 1u << 20);
  EXPECT_GT(status["cache_bytes"].GetUint64(), 0u);
  // Evicted details are read again on demand.
  EXPECT_EQ(indices(server.get("/api/snapshots?after=37").second), (std::vector<std::int64_t>{38, 39}));
  EXPECT_EQ(server.get("/api/detail?index=0").first, 200);
  // The summaries are never evicted: with the file gone bad, every snapshot is still listed.
  const auto listed = server.get("/api/snapshots").second;
  fs::resize_file(path, fs::file_size(path) / 3);
  ASSERT_TRUE(eventually([&] { return state_of(server) == "error"; }));
  EXPECT_EQ(server.get("/api/snapshots").second, listed);
  EXPECT_EQ(indices(listed).size(), 40u);
}

TEST(InspectFollow, PrintsAJsonLinePerNewSnapshotAndStopsWhenIdle) {
  const std::string path = test_dir() + "/run.h5";
  Writer writer(path, 1);
  ChildProcess follow({NEURONMAP_CLI, "inspect", path, "--follow", "--json", "--idle-exit", "3"});
  std::string line;
  std::vector<std::int64_t> seen;
  ASSERT_TRUE(follow.read_line(line, 20000));
  seen.push_back(parse(line)["index"].GetInt64());
  for (int k = 0; k < 3; ++k) {
    writer.commit();
    ASSERT_TRUE(follow.read_line(line, 20000));
    const auto d = parse(line);
    ASSERT_TRUE(d.IsObject()) << line;
    seen.push_back(d["index"].GetInt64());
  }
  EXPECT_EQ(seen, (std::vector<std::int64_t>{0, 1, 2, 3}));
  EXPECT_FALSE(follow.read_line(line, 10000)) << "extra line: " << line;
  const int status = follow.wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(InspectFollow, TextRowsAndAnErrorWhenNoFileEverAppears) {
  const std::string dir = test_dir();
  const auto missing = neuronmap::test::run_process({NEURONMAP_CLI, "inspect", dir + "/none.h5", "--follow",
                                                     "--idle-exit", "1"}, 30);
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("no run file"), std::string::npos) << missing.err;
  { Writer writer(dir + "/run.h5", 2); }
  const auto rows = neuronmap::test::run_process({NEURONMAP_CLI, "inspect", dir + "/run.h5", "--follow",
                                                  "--idle-exit", "1"}, 30);
  EXPECT_EQ(rows.exit_code, 0) << rows.err;
  EXPECT_EQ(neuronmap::test::count_lines(rows.out), 2u) << rows.out;
  EXPECT_EQ(rows.out.rfind("#0  epoch 5", 0), 0u) << rows.out;
}
