// `neuronmap report`: the files it writes, their content and structure, its errors, and the dashboard
// in a headless browser.
#include <cairo.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "neuronmap/errors.hpp"
#include "neuronmap/run.hpp"
#include "report/colormap.hpp"
#include "report/embedding.hpp"
#include "detail/json_writer.hpp"
#include "report/report.hpp"
#include "report_fixture.hpp"

namespace neuronmap::test {
namespace {

const std::string kCli = NEURONMAP_CLI;
const std::string kPython = "/usr/bin/python3";
const std::string kChromium = "/usr/bin/chromium";

struct Picture {
  bool decoded = false;
  int width = 0, height = 0;
  std::size_t colors = 0;       ///< distinct colours
  double inked = 0;             ///< share of pixels that are not white
};

Picture load_png(const std::string& path) {
  Picture p;
  cairo_surface_t* s = cairo_image_surface_create_from_png(path.c_str());
  if (cairo_surface_status(s) == CAIRO_STATUS_SUCCESS) {
    p.decoded = true;
    p.width = cairo_image_surface_get_width(s);
    p.height = cairo_image_surface_get_height(s);
    const unsigned char* data = cairo_image_surface_get_data(s);
    const int stride = cairo_image_surface_get_stride(s);
    std::set<std::uint32_t> colors;
    std::size_t inked = 0;
    for (int y = 0; y < p.height; ++y)
      for (int x = 0; x < p.width; ++x) {
        const auto v = reinterpret_cast<const std::uint32_t*>(data + static_cast<std::ptrdiff_t>(y) * stride)[x] & 0xffffffu;
        if (colors.size() < 100000) colors.insert(v);
        inked += v != 0xffffffu;
      }
    p.colors = colors.size();
    p.inked = static_cast<double>(inked) / (static_cast<double>(p.width) * p.height);
  }
  cairo_surface_destroy(s);
  return p;
}

/// A picture that decodes, has a sensible size and is not blank or a single flat colour.
/// `min_inked`: the share of non-white pixels below which it counts as blank (line drawings ink little).
void expect_picture(const std::string& path, std::size_t min_colors = 16, double min_inked = 0.05) {
  SCOPED_TRACE(path);
  ASSERT_TRUE(fs::exists(path));
  const Picture p = load_png(path);
  ASSERT_TRUE(p.decoded);
  EXPECT_GE(p.width, 600);
  EXPECT_GE(p.height, 400);
  EXPECT_LE(p.width, 2200);
  EXPECT_GE(p.colors, min_colors);
  EXPECT_GT(p.inked, min_inked);
}

/// Runs a Python check on a file: the script gets the path as sys.argv[1] and fails with a message.
void expect_python(const std::string& script, const std::string& path, const std::string& scratch,
                   const std::vector<std::string>& more = {}) {
  if (!fs::exists(kPython)) GTEST_SKIP() << kPython << " not found";
  std::vector<std::string> argv = {kPython, "-c", script, path};
  argv.insert(argv.end(), more.begin(), more.end());
  const auto r = run_command(argv, scratch);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
}

class Report : public ::testing::Test {
 protected:
  CommandResult report(const std::string& out, std::vector<std::string> extra = {},
                       const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv = {kCli, "report", run_path_, "--out", out};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run_command(argv, out_root_, env);
  }
  /// The report written in this process (no CLI start-up): most tests check content, not the verb.
  report::ReportResult report_here(report::ReportOptions options) {
    options.run_path = run_path_;
    const auto run = Run::open(run_path_);
    return report::write_report(run, options);
  }
  // A run file per test: ctest runs tests in parallel processes, which must not share one.
  void SetUp() override {
    out_root_ = test_dir();
    run_path_ = out_root_ + "/run.h5";
    write_planted_run(run_path_, standard_layers(), 4);
  }

  std::string run_path_;
  std::string out_root_;
};

TEST_F(Report, DefaultWritesTheOriginalToolsFilesAndReports) {
  const std::string out = out_root_ + "/out";
  const auto r = report(out);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << "no progress line when stderr is not a terminal";
  for (const std::string layer : {"conv1", "features_3", "fc1"}) {
    // The original tool's views (from the sample rows), then ours (from the statistics).
    expect_picture(out + "/pytorch_groups_heatmap_" + layer + ".png", 64);
    expect_picture(out + "/pytorch_groups_scatter_" + layer + ".png");
    expect_picture(out + "/pytorch_groups_correlation_" + layer + ".png", 64);
    expect_picture(out + "/pytorch_neurons_scatter_" + layer + ".png");
    expect_picture(out + "/pytorch_groups_network_" + layer + ".png", 16, 0.01);
  }
  // No matrix stored for head/out: its sample views and a neuron scatter from its statistics, but no
  // correlation heatmap and no network.
  expect_picture(out + "/pytorch_groups_heatmap_head_out.png");
  expect_picture(out + "/pytorch_groups_scatter_head_out.png");
  expect_picture(out + "/pytorch_neurons_scatter_head_out.png");
  EXPECT_FALSE(fs::exists(out + "/pytorch_groups_correlation_head_out.png"));
  EXPECT_FALSE(fs::exists(out + "/pytorch_groups_network_head_out.png"));
  expect_picture(out + "/pytorch_all_layers_heatmap.png");
  expect_picture(out + "/pytorch_all_layers_correlation.png", 64);
  expect_picture(out + "/pytorch_timeline.png");
  EXPECT_TRUE(fs::exists(out + "/pytorch_neuron_group_analysis_report.json"));
  EXPECT_TRUE(fs::exists(out + "/pytorch_neuron_group_analysis_report.txt"));
  EXPECT_EQ(fs::exists(out + "/pytorch_interactive_dashboard.html"), !report::find_echarts().empty());

  // Small layers: a heatmap of 640 px for the matrix plus margins; the whole picture stays compact.
  const Picture heat = load_png(out + "/pytorch_groups_correlation_fc1.png");
  EXPECT_GE(heat.width, 640 + 100);
  EXPECT_LE(heat.width, 1024);
  EXPECT_GE(heat.height, 640 + 100);

  // The JSON report: the original tool's structure, what the file holds, and no NaN anywhere.
  const std::string check = R"(
import json, sys
def no_constants(c):
    raise ValueError('non-JSON constant ' + c)
d = json.load(open(sys.argv[1]), parse_constant=no_constants)
meta = d['pytorch_analysis']
for k in ('device', 'torch_version', 'total_layers', 'analysis_timestamp'):
    assert k in meta, k
assert meta['total_layers'] == 4 and meta['epoch'] == 20 and meta['device'] == 'cpu'
la = d['layer_analysis']
assert list(la) == ['conv1', 'features.3', 'fc1', 'head/out'], list(la)
fc1 = la['fc1']
assert fc1['activation_shape'] == [1024, 96], fc1['activation_shape']
assert fc1['groups_found'] == len(fc1['groups_detail']) > 0
g = fc1['groups_detail'][0]
for k in ('group_id', 'size', 'neuron_indices', 'cohesion', 'min_member_correlation', 'loose', 'mean_activation'):
    assert k in g, k
assert all(x['loose'] == (x['cohesion'] < 0.6) for x in fc1['groups_detail'])
assert g['size'] == len(g['neuron_indices'])
assert any('skill_category' in x for x in fc1['groups_detail'])
assert any('learning_phase' in x for x in fc1['groups_detail'])
assert fc1['files']['heatmap'] == 'pytorch_groups_heatmap_fc1.png'
assert fc1['files']['correlation'] == 'pytorch_groups_correlation_fc1.png'
assert fc1['files']['network'] == 'pytorch_groups_network_fc1.png'
assert fc1['files']['neuron_scatter'] == 'pytorch_neurons_scatter_fc1.png'
ho = la['head/out']
assert ho['files']['correlation'] is None and ho['files']['network'] is None and ho['correlation_stored'] is False
assert ho['files']['heatmap'] == 'pytorch_groups_heatmap_head_out.png'
lp = d['learning_patterns']
assert lp['total_events'] == 0 and lp['events'] == [] and 'events_note' in lp
assert lp['group_skill_distribution'].get('mathematical', 0) > 0
assert len(lp['timeline']) == 4
assert lp['timeline'][2]['loss'] is None, 'NaN loss must be null'
assert [t['epoch'] for t in lp['timeline']] == [5, 10, 15, 20]
assert 'pytorch_timeline.png' in d['outputs']['files']
assert d['outputs']['dashboard']['written'] is (sys.argv[2] == 'dashboard')
)";
  const bool dashboard = fs::exists(out + "/pytorch_interactive_dashboard.html");
  expect_python(check, out + "/pytorch_neuron_group_analysis_report.json", out_root_,
                {dashboard ? "dashboard" : "none"});
  const std::string text = read_file(out + "/pytorch_neuron_group_analysis_report.txt");
  for (const std::string part : {"PyTorch Neuron Group Analysis Report", "Layer analysis (epoch 20)", "features.3",
                                 "groups found:", "activation shape: 1024 samples x 96 neurons", "Group 0: size",
                                 "Learning patterns", "Learning events: none", "pytorch_timeline.png"})
    EXPECT_NE(text.find(part), std::string::npos) << part;
}

TEST_F(Report, SvgFormatWritesWellFormedSvg) {
  report::ReportOptions options;
  options.out_dir = out_root_ + "/out";
  options.format = report::ImageFormat::svg;
  options.dashboard = false;
  options.layers = {"fc1"};
  report_here(options);
  std::vector<std::string> files;
  for (const std::string f : {"pytorch_groups_heatmap_fc1.svg", "pytorch_groups_scatter_fc1.svg",
                              "pytorch_groups_correlation_fc1.svg", "pytorch_groups_network_fc1.svg",
                              "pytorch_all_layers_heatmap.svg", "pytorch_timeline.svg"}) {
    const std::string path = options.out_dir + "/" + f;
    ASSERT_TRUE(fs::exists(path)) << f;
    EXPECT_GT(fs::file_size(path), 2000u) << f;
    files.push_back(path);
  }
  expect_python(R"(
import sys, xml.etree.ElementTree as ET
for path in sys.argv[1:]:
    root = ET.parse(path).getroot()
    assert root.tag == '{http://www.w3.org/2000/svg}svg', (path, root.tag)
    assert root.get('width').endswith('px') and float(root.get('width')[:-2]) >= 400, (path, root.get('width'))
    assert len(list(root.iter())) > 20, path
)",
                files[0], out_root_, {files.begin() + 1, files.end()});
  EXPECT_FALSE(fs::exists(options.out_dir + "/pytorch_groups_heatmap_fc1.png"));
}

TEST_F(Report, EpochAndLayersPickOneSnapshotAndSomeLayers) {
  const std::string out = out_root_ + "/out";
  report::ReportOptions options;
  options.out_dir = out;
  options.epoch = 10;
  options.layers = {"fc1", "features.3"};
  options.dashboard = false;
  report_here(options);
  EXPECT_TRUE(fs::exists(out + "/pytorch_groups_heatmap_fc1.png"));
  EXPECT_TRUE(fs::exists(out + "/pytorch_groups_heatmap_features_3.png"));
  EXPECT_FALSE(fs::exists(out + "/pytorch_groups_heatmap_conv1.png"));
  expect_python(R"(
import json, sys
d = json.load(open(sys.argv[1]))
assert d['pytorch_analysis']['epoch'] == 10
assert list(d['layer_analysis']) == ['features.3', 'fc1']
assert all(list(t['layers']) == ['features.3', 'fc1'] for t in d['learning_patterns']['timeline'])
)",
                out + "/pytorch_neuron_group_analysis_report.json", out_root_);
}

TEST_F(Report, AllWritesPerEpochFiles) {
  const std::string out = out_root_ + "/out";
  report::ReportOptions options;
  options.out_dir = out;
  options.all = true;
  options.layers = {"conv1"};
  options.dashboard = false;
  report_here(options);
  for (int epoch : {5, 10, 15, 20}) {
    const std::string e = "_e" + std::to_string(epoch);
    EXPECT_TRUE(fs::exists(out + "/pytorch_groups_heatmap_conv1" + e + ".png")) << e;
    EXPECT_TRUE(fs::exists(out + "/pytorch_groups_scatter_conv1" + e + ".png")) << e;
    EXPECT_TRUE(fs::exists(out + "/pytorch_all_layers_heatmap" + e + ".png")) << e;
    EXPECT_TRUE(fs::exists(out + "/pytorch_neuron_group_analysis_report" + e + ".json")) << e;
  }
  EXPECT_TRUE(fs::exists(out + "/pytorch_timeline.png"));
  EXPECT_FALSE(fs::exists(out + "/pytorch_groups_heatmap_conv1.png"));
}

TEST_F(Report, UnknownEpochsAndLayersAreRefusedWithTheChoices) {
  report::ReportOptions options;
  options.out_dir = out_root_ + "/out";
  options.epoch = 7;
  try {
    report_here(options);
    ADD_FAILURE() << "no error for epoch 7";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("5, 10, 15, 20"), std::string::npos) << e.what();
  }
  options.epoch.reset();
  options.layers = {"fc1", "fc9"};
  try {
    report_here(options);
    ADD_FAILURE() << "no error for layer fc9";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'fc9'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("conv1, features.3, fc1, head/out"), std::string::npos) << e.what();
  }
}

TEST_F(Report, LearningEventsPhasesAndCkaAreReportedWhereTheRunHoldsThem) {
  // Through a run file: what the store keeps of the learning data reaches the report.
  const MemoryRun memory = planted_memory_run(4);
  const std::string path = out_root_ + "/learning.h5";
  {
    detail::RunWriter writer(path, memory.info(), true);
    for (std::int64_t i = 0; i < memory.size(); ++i) writer.append(memory.snapshot(i));
    writer.close();
  }
  report::ReportOptions options;
  options.out_dir = out_root_ + "/out";
  options.run_path = path;
  options.dashboard = false;
  report::write_report(Run::open(path), options);
  expect_python(R"(
import json, sys
d = json.load(open(sys.argv[1]), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
lp = d['learning_patterns']
assert lp['total_events'] == 24, lp['total_events']            # 3 snapshots x 4 layers x 2 events
assert lp['events_per_kind'] == {'cohesion_jump': 12, 'emerged': 12}, lp['events_per_kind']
assert lp['skill_distribution'] == {'digits': 12}, lp['skill_distribution']
assert abs(lp['average_strength'] - (0.25 * 12 + sum(0.4 + 0.1 * s for s in (1, 2, 3)) * 4) / 24) < 1e-9
assert 'events_note' not in lp
e = lp['events'][0]
assert e['epoch'] == 10 and e['kind'] == 'emerged' and e['lineages'] == [100] and e['loss_change'] == -0.3
assert [t['phase'] for t in lp['timeline']] == ['', 'rapid', 'refinement', 'plateau']
assert [t['events'] for t in lp['timeline']] == [0, 8, 8, 8]
assert lp['timeline'][0]['layers']['fc1']['cka_previous'] is None
assert abs(lp['timeline'][2]['layers']['fc1']['cka_previous'] - 0.76) < 1e-9
assert len(lp['loss_curve']['epochs']) == 20 and lp['loss_curve']['epochs'][0] == 1
fc1 = d['layer_analysis']['fc1']
g = fc1['groups_detail'][1]
assert g['lineage_id'] == 301 and abs(g['selectivity'] - 0.1) < 1e-12 and abs(g['loss_correlation'] + 0.15) < 1e-12
assert fc1['dormant_rate'] == 0.0 and abs(fc1['cka_previous'] - 0.84) < 1e-9
assert d['pytorch_analysis']['tag_names'] == ['digits', 'letters'] and d['pytorch_analysis']['phase'] == 'plateau'
)",
                options.out_dir + "/pytorch_neuron_group_analysis_report.json", out_root_);
  const std::string text = read_file(options.out_dir + "/pytorch_neuron_group_analysis_report.txt");
  for (const std::string part : {"Learning events: 24 (cohesion_jump 12, emerged 12)", "Strongest events", "plateau",
                                 "CKA to previous:  0.840", "lineage 301"})
    EXPECT_NE(text.find(part), std::string::npos) << part;
  expect_picture(options.out_dir + "/pytorch_timeline.png");
}

TEST_F(Report, CliExitCodesForBadRequests) {
  const std::string out = out_root_ + "/out";
  auto r = report(out, {"--epoch", "7"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("no snapshot at epoch 7"), std::string::npos) << r.err;
  r = report(out, {"--epoch", "5", "--all", "--format", "gif"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
}

TEST_F(Report, WithoutEChartsTheDashboardIsSkippedAndTheReasonGiven) {
  const std::string missing = out_root_ + "/no-echarts.js";
  ::setenv("NEURONMAP_ECHARTS_JS", missing.c_str(), 1);
  report::ReportOptions options;
  options.out_dir = out_root_ + "/out";
  options.layers = {"conv1"};
  const auto result = report_here(options);
  ::unsetenv("NEURONMAP_ECHARTS_JS");
  EXPECT_FALSE(result.dashboard_written);
  bool said_npm = false;
  for (const auto& n : result.notes) said_npm = said_npm || n.find("npm") != std::string::npos;
  EXPECT_TRUE(said_npm);
  EXPECT_FALSE(fs::exists(options.out_dir + "/pytorch_interactive_dashboard.html"));
  EXPECT_NE(read_file(options.out_dir + "/pytorch_neuron_group_analysis_report.txt").find("npm"), std::string::npos);
}

TEST_F(Report, ProgressLineOnlyWhenStderrIsATerminal) {
  const std::string out = out_root_ + "/out";
  int master = -1;
  const pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execl(kCli.c_str(), kCli.c_str(), "report", run_path_.c_str(), "--out", out.c_str(), "--no-dashboard",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::string seen;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(master, buffer, sizeof buffer);
    if (n <= 0) break;  // EIO once the child has exited
    seen.append(buffer, static_cast<std::size_t>(n));
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(master);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << seen;
  EXPECT_NE(seen.find("neuronmap report: ["), std::string::npos) << seen;
  EXPECT_NE(seen.find('\r'), std::string::npos);
}

TEST(ReportLarge, LargeLayersAreDownsampledToAtMost1024Pixels) {
  const std::string dir = test_dir();
  const std::string path = dir + "/large.h5";
  write_planted_run(path, {{"wide.layer", "torch::nn::LinearImpl", "rows as samples", 1400}}, 1);
  report::ReportOptions options;
  options.out_dir = dir + "/out";
  options.run_path = path;
  const auto run = Run::open(path);
  const auto result = report::write_report(run, options);
  const Picture heat = load_png(options.out_dir + "/pytorch_groups_correlation_wide_layer.png");
  ASSERT_TRUE(heat.decoded);
  EXPECT_LE(heat.width, 1024 + 300);
  EXPECT_LE(heat.height, 1024 + 200);
  EXPECT_GE(heat.colors, 64u);
  expect_picture(options.out_dir + "/pytorch_groups_scatter_wide_layer.png");
  expect_picture(options.out_dir + "/pytorch_groups_heatmap_wide_layer.png", 64);
  expect_picture(options.out_dir + "/pytorch_groups_network_wide_layer.png", 16, 0.01);
  if (result.dashboard_written) {
    // The embedded matrix is reduced too: the file stays small.
    EXPECT_LT(fs::file_size(options.out_dir + "/pytorch_interactive_dashboard.html"), 4u << 20);
  }
}

TEST(ReportLarge, LongRunsEmbedEvenlySpacedSnapshotsAndTimeAll) {
  const std::string dir = test_dir();
  const std::string path = dir + "/long.h5";
  write_planted_run(path, {{"fc1", "torch::nn::LinearImpl", "rows as samples", 24}}, 30);
  report::ReportOptions options;
  options.out_dir = dir + "/out";
  options.run_path = path;
  options.epoch = 25;  // snapshot 4: not one of the 24 evenly spaced ones, so added to them
  const auto run = Run::open(path);
  const auto result = report::write_report(run, options);
  expect_python(R"(
import json, sys
d = json.load(open(sys.argv[1]))
assert d["pytorch_analysis"]["epoch"] == 25
assert len(d['learning_patterns']['timeline']) == 30
)",
                options.out_dir + "/pytorch_neuron_group_analysis_report.json", dir);
  if (!result.dashboard_written) return;
  const std::string html = read_file(options.out_dir + "/pytorch_interactive_dashboard.html");
  EXPECT_NE(html.find("embedded for 25 of the 30 snapshots"), std::string::npos);
  EXPECT_NE(html.find("\"initial_detail\":"), std::string::npos);
}

TEST(ReportParts, FileNamesAreSanitised) {
  EXPECT_EQ(report::sanitize_file_part("features.3"), "features_3");
  EXPECT_EQ(report::sanitize_file_part("encoder/layer.0/attn"), "encoder_layer_0_attn");
  EXPECT_EQ(report::sanitize_file_part("fc-1_b"), "fc-1_b");
  EXPECT_EQ(report::sanitize_file_part("../x"), "___x");
  EXPECT_EQ(report::sanitize_file_part(""), "layer");
}

TEST(ReportParts, JsonWriterEscapesAndWritesNullForNaN) {
  detail::JsonWriter w(detail::JsonLayout::compact, detail::JsonEscape::html);
  w.begin_object().field("a", std::nan("")).field("b", 1.5).field("s", "q\"</script>\n\xff");
  w.key("v").array(std::vector<double>{1.0, INFINITY}).end_object();
  // The invalid byte becomes U+FFFD itself (RapidJSON writes UTF-8 as it is, not as \ufffd).
  EXPECT_EQ(w.str(), R"({"a":null,"b":1.5,"s":"q\"\u003c/script\u003e\n)" "\xEF\xBF\xBD" R"(","v":[1,null]})");
}

TEST(ReportParts, PcaFindsThePlantedDirection) {
  // Points along (1, 2, 0) with small noise: PC1 explains nearly everything and orders the points.
  const int n = 50;
  std::vector<float> data;
  for (int i = 0; i < n; ++i) {
    const float t = static_cast<float>(i - n / 2);
    data.insert(data.end(), {t, 2 * t + 0.01f * static_cast<float>(i % 3), 0.02f * static_cast<float>(i % 5)});
  }
  const auto pca = report::principal_components(data.data(), n, 3, 2, 1);
  ASSERT_EQ(pca.scores.size(), 2u);
  EXPECT_GT(pca.explained[0], 0.999);
  const double direction = pca.scores[0][1] > pca.scores[0][0] ? 1.0 : -1.0;
  for (int i = 1; i < n; ++i) EXPECT_GT(direction * (pca.scores[0][i] - pca.scores[0][i - 1]), 0.0) << i;
}

TEST(ReportParts, RandomisedPcaAgreesWithTheExactOne) {
  // Large enough for the randomised path; compare explained variance with the exact path on a copy.
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal;
  const int rows = 400, cols = 400;
  std::vector<float> data(static_cast<std::size_t>(rows * cols));
  for (int i = 0; i < rows; ++i) {
    const float a = normal(rng) * 5, b = normal(rng) * 2;
    for (int j = 0; j < cols; ++j)
      data[static_cast<std::size_t>(i * cols + j)] = a * std::sin(j * 0.1f) + b * std::cos(j * 0.37f) + 0.1f * normal(rng);
  }
  const auto randomised = report::principal_components(data.data(), rows, cols, 2, 7);
  EXPECT_GT(randomised.explained[0] + randomised.explained[1], 0.99);
  EXPECT_GT(randomised.explained[0], randomised.explained[1]);
}

TEST(ReportParts, TsneIsSeededAndKeepsPlantedGroupsApart) {
  const auto layer = planted_layer({"fc", "torch::nn::LinearImpl", "rows as samples", 60}, 3, 3, 5);
  const auto a = report::embed_layer(layer, true, 11);
  const auto b = report::embed_layer(layer, true, 11);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->x, b->x);
  EXPECT_EQ(a->y, b->y);
  EXPECT_NE(a->method.find("t-SNE"), std::string::npos);
  // Every neuron is nearer, on average, to its own group than to the others.
  std::vector<int> group(60, -1);
  for (const auto& g : layer.groups)
    for (auto i : g.neuron_indices) group[static_cast<std::size_t>(i)] = g.group_id;
  double inside = 0, outside = 0;
  int n_inside = 0, n_outside = 0;
  for (std::size_t i = 0; i < a->neurons.size(); ++i)
    for (std::size_t j = i + 1; j < a->neurons.size(); ++j) {
      const int gi = group[static_cast<std::size_t>(a->neurons[i])], gj = group[static_cast<std::size_t>(a->neurons[j])];
      if (gi < 0 || gj < 0) continue;
      const double d = std::hypot(a->x[i] - a->x[j], a->y[i] - a->y[j]);
      if (gi == gj) inside += d, ++n_inside;
      else outside += d, ++n_outside;
    }
  ASSERT_GT(n_inside, 0);
  EXPECT_LT(inside / n_inside, 0.5 * outside / n_outside);
}

TEST(ReportParts, CoolWarmRunsFromBlueThroughGreyToRed) {
  const auto low = report::correlation_color(-1), mid = report::correlation_color(0), high = report::correlation_color(1);
  EXPECT_GT(low.b, low.r);
  EXPECT_GT(high.r, high.b);
  EXPECT_NEAR(mid.r, mid.b, 0.01);
  EXPECT_EQ(report::correlation_color(std::nan("")).hex(), "#ffffff");
}

TEST_F(Report, DashboardRendersInHeadlessChromium) {
  if (!fs::exists(kChromium)) GTEST_SKIP() << kChromium << " not found: the browser test is skipped";
  if (report::find_echarts().empty()) GTEST_SKIP() << "ECharts not installed (npm): no dashboard to test";
  // An in-memory run with learning events, phases and CKA, so that every part of the page has data.
  const MemoryRun run = planted_memory_run(4);
  report::ReportOptions options;
  options.out_dir = out_root_ + "/out";
  options.run_path = "memory";
  options.epoch = 15;
  ASSERT_TRUE(report::write_report(run, options).dashboard_written);
  const std::string url = "file://" + fs::absolute(options.out_dir + "/pytorch_interactive_dashboard.html").string();
  const std::string shot = fs::path(NEURONMAP_TEST_BINARY_DIR) / "dashboard_screenshot.png";
  fs::remove(shot);

  // One browser start: the page's self-test switches every layer and snapshot and records whether the
  // charts' data changed; the DOM is dumped and a screenshot taken.
  const auto dom = run_command({kChromium, "--headless", "--no-sandbox", "--disable-gpu",
                                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                                "--no-first-run", "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0",
                                "--user-data-dir=" + out_root_ + "/profile", "--window-size=1400,1000",
                                "--hide-scrollbars", "--virtual-time-budget=5000", "--screenshot=" + shot,
                                "--dump-dom", url + "#selftest"},
                               out_root_, {}, 150);
  ASSERT_FALSE(dom.timed_out);
  ASSERT_EQ(dom.exit_code, 0) << dom.err;
  const auto selftest = dom.out.find("nm-selftest");
  ASSERT_NE(selftest, std::string::npos) << dom.out.substr(0, 2000);
  // 11 charts: correlation, neuron scatter, activations, sample scatter, group sizes, per-sample group
  // lines and the five timelines.
  EXPECT_NE(dom.out.find("data-neuronmap=\"ok:11\""), std::string::npos) << dom.out.substr(0, 400);
  EXPECT_NE(dom.out.find("data-neuronmap-selftest=\"pass:"), std::string::npos) << dom.out.substr(selftest, 2000);
  std::size_t canvases = 0;
  for (auto at = dom.out.find("<canvas"); at != std::string::npos; at = dom.out.find("<canvas", at + 1)) ++canvases;
  EXPECT_GE(canvases, 11u);
  EXPECT_EQ(dom.err.find("Uncaught"), std::string::npos) << dom.err;
  // 4 layers and 4 embedded snapshots: every switch changes what the charts show.
  EXPECT_NE(dom.out.find("\"checks\":[{"), std::string::npos);
  EXPECT_EQ(dom.out.find("\"changed\":false"), std::string::npos) << dom.out.substr(selftest, 2000);
  // The group table as the page left it (conv1 at epoch 15): its weakest planted group is marked loose.
  const auto table = dom.out.find("id=\"nm-groups\"");
  ASSERT_NE(table, std::string::npos);
  const std::string groups = dom.out.substr(table, dom.out.find("</table>", table) - table);
  EXPECT_NE(groups.find("min member r"), std::string::npos) << groups;
  EXPECT_NE(groups.find("class=\"loose\""), std::string::npos) << groups;

  const Picture p = load_png(shot);
  ASSERT_TRUE(p.decoded) << shot;
  EXPECT_EQ(p.width, 1400);
  EXPECT_EQ(p.height, 1000);
  EXPECT_GE(p.colors, 64u);
}

}  // namespace
}  // namespace neuronmap::test
