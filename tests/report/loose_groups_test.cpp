// Loose groups end to end: k-means groups made by the engine, stored in the run file, and listed as
// loose by the text and JSON reports, the dashboard's data and `neuronmap inspect`.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "neuronmap/options.hpp"
#include "neuronmap/run.hpp"
#include "report/report.hpp"
#include "report_fixture.hpp"
#include "stream/engine.hpp"

namespace neuronmap::test {
namespace {

const std::string kCli = NEURONMAP_CLI;
const std::string kPython = "/usr/bin/python3";
constexpr double kThreshold = 0.6;

std::size_t count(const std::string& text, const std::string& part) {
  std::size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

/// Three independent clusters of three co-activating neurons (r about 0.8 inside, 0 across), grouped
/// by k-means into k = 2 groups: one group must join two clusters, so its cohesion is about 0.3.
std::string write_kmeans_run(const std::string& path) {
  Grouping grouping;
  grouping.method = GroupingMethod::kmeans;
  grouping.n_groups = 2;
  grouping.threshold = kThreshold;
  grouping.min_group_size = 1;
  const std::vector<LayerInfo> layers = {{"fc", "torch::nn::LinearImpl", "rows as samples"}};
  RunInfo info;
  info.library_version = "test";
  info.options_json = R"({"grouping":{"method":"kmeans","threshold":0.6,"n_groups":2}})";
  info.layers = layers;
  detail::Engine engine(layers, Options{}.every(1).file(path).grouping(grouping), info, {});
  std::mt19937_64 rng(11);
  std::normal_distribution<double> normal;
  constexpr std::int64_t kRows = 64, kCols = 9;
  for (int batch = 0; batch < 8; ++batch) {
    auto ticket = engine.begin_batch(0);
    if (!ticket) return "the engine did not capture epoch 1";
    float* values = ticket.reserve_values(kRows, kCols);
    for (std::int64_t r = 0; r < kRows; ++r) {
      const double z[3] = {normal(rng), normal(rng), normal(rng)};
      for (std::int64_t c = 0; c < kCols; ++c)
        values[r * kCols + c] = static_cast<float>(z[c / 3] + 0.5 * normal(rng));
    }
    engine.submit(std::move(ticket));
  }
  engine.end_epoch(1, 0.5);
  engine.close();
  return engine.last_error();
}

TEST(LooseGroups, KmeansGroupsBelowTheThresholdAreListedAsLooseEverywhere) {
  const std::string dir = test_dir();
  const std::string path = dir + "/kmeans.h5";
  ASSERT_EQ(write_kmeans_run(path), "");

  // The engine decided and the store kept it: loose exactly when cohesion < threshold.
  const auto run = Run::open(path);
  ASSERT_EQ(run.size(), 1);
  const auto snapshot = run.snapshot(0);
  const auto& groups = snapshot.layers.at(0).groups;
  ASSERT_EQ(groups.size(), 2u);
  int loose = 0;
  for (const auto& g : groups) {
    SCOPED_TRACE("group " + std::to_string(g.group_id));
    EXPECT_EQ(g.loose, g.cohesion_score < kThreshold);
    ASSERT_TRUE(std::isfinite(g.min_member_correlation));
    EXPECT_LE(g.min_member_correlation, g.cohesion_score + 1e-12);
    loose += g.loose;
    if (g.loose) EXPECT_EQ(g.group_size(), 6u);  // the two joined clusters
    else EXPECT_GT(g.min_member_correlation, kThreshold);
  }
  EXPECT_EQ(loose, 1);
  EXPECT_EQ(run.summary(0).layers.at(0).loose_groups(), 1);

  report::ReportOptions options;
  options.out_dir = dir + "/out";
  options.run_path = path;
  const auto result = report::write_report(run, options);

  const std::string text = read_file(options.out_dir + "/pytorch_neuron_group_analysis_report.txt");
  EXPECT_EQ(count(text, "(loose: cohesion below the grouping threshold)"), 1u) << text;
  EXPECT_EQ(count(text, "min member r "), 2u) << text;
  EXPECT_NE(text.find("groups found:     2 (1 loose)"), std::string::npos) << text;

  if (!std::filesystem::exists(kPython)) GTEST_SKIP() << kPython << " not found";
  // The JSON report and `inspect --json` list the same groups with the same marks.
  const std::string check = R"(
import json, sys
threshold = 0.6
def strict(c):
    raise ValueError('non-JSON constant ' + c)
report = json.load(open(sys.argv[1]), parse_constant=strict)
fc = report['layer_analysis']['fc']
groups = fc['groups_detail']
assert [g['loose'] for g in groups] == [g['cohesion'] < threshold for g in groups], groups
assert sum(g['loose'] for g in groups) == 1 and fc['loose_groups'] == 1, groups
assert all(g['min_member_correlation'] <= g['cohesion'] + 1e-12 for g in groups), groups
assert report['learning_patterns']['timeline'][0]['loose_groups'] == 1
assert report['learning_patterns']['timeline'][0]['layers']['fc']['loose_groups'] == 1
inspect = json.loads(open(sys.argv[2]).read(), parse_constant=strict)
layer = inspect['snapshots'][0]['layers'][0]
assert layer['loose_groups'] == 1, layer
listed = [(g['group_id'], g['size'], g['loose']) for g in layer['groups_detail']]
assert listed == [(g['group_id'], g['size'], g['loose']) for g in groups], (listed, groups)
assert [g['min_member_correlation'] for g in layer['groups_detail']] == [g['min_member_correlation'] for g in groups]
)";
  const auto inspected = run_command({kCli, "inspect", path, "--json"}, dir);
  ASSERT_EQ(inspected.exit_code, 0) << inspected.err;
  std::ofstream(dir + "/inspect.json") << inspected.out;
  const auto checked = run_command(
      {kPython, "-c", check, options.out_dir + "/pytorch_neuron_group_analysis_report.json", dir + "/inspect.json"}, dir);
  EXPECT_EQ(checked.exit_code, 0) << checked.out << checked.err;

  const auto table = run_command({kCli, "inspect", path}, dir);
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find("loose"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("min member r"), std::string::npos) << table.out;

  if (result.dashboard_written) {  // the page's data: the dashboard test renders the table itself
    const std::string html = read_file(options.out_dir + "/pytorch_interactive_dashboard.html");
    EXPECT_EQ(count(html, "\"loose\":true"), 1u);
    EXPECT_EQ(count(html, "\"min_member_correlation\":"), 2u);
  }
}

}  // namespace
}  // namespace neuronmap::test
