// The original tool's views (activations by group, samples in PCA, group size vs cohesion) and the
// network picture: what they are computed from, and that the groups show in them with their colours.
#include <cairo.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "report/colormap.hpp"
#include "report/layout.hpp"
#include "report/seed_charts.hpp"
#include "report_fixture.hpp"

namespace neuronmap::test {
namespace {

/// Pixels of exactly colour `c` in a PNG.
std::int64_t count_color(const std::string& path, const report::Rgb& c) {
  cairo_surface_t* s = cairo_image_surface_create_from_png(path.c_str());
  std::int64_t n = 0;
  if (cairo_surface_status(s) == CAIRO_STATUS_SUCCESS) {
    const unsigned char* data = cairo_image_surface_get_data(s);
    const int stride = cairo_image_surface_get_stride(s);
    const std::uint32_t want = c.argb() & 0xffffffu;
    for (int y = 0; y < cairo_image_surface_get_height(s); ++y)
      for (int x = 0; x < cairo_image_surface_get_width(s); ++x)
        n += (reinterpret_cast<const std::uint32_t*>(data + static_cast<std::ptrdiff_t>(y) * stride)[x] & 0xffffffu) == want;
  }
  cairo_surface_destroy(s);
  return n;
}

/// A layer of 6 neurons, two groups with ids 4 and 7 (purple and grey: neither reddish), four sample rows.
LayerSnapshot small_layer() {
  LayerSnapshot l;
  l.name = "fc";
  l.n_neurons = 6;
  l.reservoir = {5, 5, 5, 0, 0, 1,   // group 4 ({0,1,2}) strongest
                 0, 0, 1, 4, 4, 4,   // group 7 ({3,4,5})
                 1, 1, 1, 1, 1, 1,   // a tie: the first group in list order
                 6, 6, 6, 0, 0, 0};
  l.reservoir_ids = {0, 1, 2, 3};
  Group a, b;
  a.group_id = 4;
  a.neuron_indices = {0, 1, 2};
  a.cohesion_score = 0.9;
  b.group_id = 7;
  b.neuron_indices = {3, 4, 5};
  b.cohesion_score = 0.4;
  l.groups = {a, b};
  l.correlation.assign(36, 0.0f);
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 6; ++j) l.correlation[static_cast<std::size_t>(i * 6 + j)] = i == j ? 1.0f : (i / 3 == j / 3 ? 0.8f : -0.1f);
  l.dead.assign(6, 0);
  return l;
}

TEST(SeedPictures, GroupMeansAndMostActiveGroupPerSample) {
  const LayerSnapshot l = small_layer();
  const auto rows = report::sample_rows(l);
  ASSERT_EQ(rows.rows, 4);
  ASSERT_EQ(rows.cols, 6);
  const auto means = report::group_means(rows, l.groups);
  EXPECT_EQ(means, (std::vector<double>{5, 1.0 / 3, 1.0 / 3, 4, 1, 1, 6, 0}));
  EXPECT_EQ(report::most_active_group(means, 4, 2), (std::vector<std::int32_t>{0, 1, 0, 0}));
  LayerSnapshot no_rows = l;
  no_rows.reservoir.pop_back();  // not a whole number of rows: treated as none
  EXPECT_EQ(report::sample_rows(no_rows).rows, 0);
}

TEST(SeedPictures, EachViewShowsTheGroupsInTheirColours) {
  const std::string dir = test_dir();
  const LayerSnapshot l = small_layer();
  const report::SnapshotLabel at{3, 0.5};
  const auto order = report::order_by_group(l);
  const std::string heat = dir + "/heat.png", scatter = dir + "/scatter.png", net = dir + "/net.png",
                    sizes = dir + "/sizes.png";
  report::draw_activation_heatmap(heat, report::ImageFormat::png, l, order, at);
  report::draw_sample_scatter(scatter, report::ImageFormat::png, l, at, 42);
  report::draw_network(net, report::ImageFormat::png, l, at);
  report::draw_size_cohesion(sizes, report::ImageFormat::png, {&l}, at);
  for (const auto& path : {heat, scatter, net}) {
    SCOPED_TRACE(path);
    EXPECT_GT(count_color(path, report::group_color(4)), 30);
    EXPECT_GT(count_color(path, report::group_color(7)), 30);
    EXPECT_EQ(count_color(path, report::group_color(0)), 0);  // ids as given, not positions
  }
  // The activation heatmap colours values on viridis: its darkest and brightest ends are both there.
  EXPECT_GT(count_color(heat, report::viridis(0.0)), 100);
  EXPECT_GT(count_color(heat, report::viridis(1.0)), 100);
  // Group size vs cohesion: one cell per group in the colour of its cohesion.
  EXPECT_GT(count_color(sizes, report::viridis(0.9)), 500);
  EXPECT_GT(count_color(sizes, report::viridis(0.4)), 500);
}

TEST(SeedPictures, NetworkEdgesFollowTheStrongCorrelations) {
  const std::string dir = test_dir();
  LayerSnapshot l = small_layer();
  const report::SnapshotLabel at{3, 0.5};
  // Strong r (0.8) inside each group: edges in r = 0.8's colour; nothing between groups (|-0.1| < 0.5).
  report::draw_network(dir + "/strong.png", report::ImageFormat::png, l, at);
  for (auto& r : l.correlation)
    if (r < 0.99f) r = 0.2f;
  report::draw_network(dir + "/weak.png", report::ImageFormat::png, l, at);
  // Edges are drawn with transparency, so count near-colours: any pixel tinted towards red.
  const auto reddish = [](const std::string& path) {
    cairo_surface_t* s = cairo_image_surface_create_from_png(path.c_str());
    std::int64_t n = 0;
    const unsigned char* data = cairo_image_surface_get_data(s);
    const int stride = cairo_image_surface_get_stride(s);
    for (int y = 90; y < cairo_image_surface_get_height(s); ++y)
      for (int x = 0; x < 800; ++x) {
        const auto v = reinterpret_cast<const std::uint32_t*>(data + static_cast<std::ptrdiff_t>(y) * stride)[x];
        const int r = (v >> 16) & 0xff, g = (v >> 8) & 0xff, b = v & 0xff;
        n += r > g + 25 && r > b + 25 && r > 150;
      }
    cairo_surface_destroy(s);
    return n;
  };
  EXPECT_GT(reddish(dir + "/strong.png"), 200);
  // Without strong pairs only the nodes remain (purple and grey).
  EXPECT_LT(reddish(dir + "/weak.png"), reddish(dir + "/strong.png") / 4);
}

TEST(SeedPictures, ReportWithoutSampleRowsSaysWhy) {
  const std::string dir = test_dir();
  auto run = planted_memory_run(1);
  std::vector<Snapshot> snaps = {run.snapshot(0)};
  for (auto& l : snaps[0].layers) l.reservoir.clear(), l.reservoir_ids.clear();
  MemoryRun empty_rows(run.info(), snaps);
  report::ReportOptions options;
  options.out_dir = dir + "/out";
  options.dashboard = false;
  const auto result = report::write_report(empty_rows, options);
  EXPECT_FALSE(fs::exists(options.out_dir + "/pytorch_groups_heatmap_fc1.png"));
  EXPECT_FALSE(fs::exists(options.out_dir + "/pytorch_groups_scatter_fc1.png"));
  EXPECT_TRUE(fs::exists(options.out_dir + "/pytorch_groups_correlation_fc1.png"));
  bool said = false;
  for (const auto& n : result.notes) said = said || n.find("no sample rows stored") != std::string::npos;
  EXPECT_TRUE(said);
}

}  // namespace
}  // namespace neuronmap::test
