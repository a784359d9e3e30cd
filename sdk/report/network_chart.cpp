// The network picture: a layer's groups as a graph of neurons joined by their strong correlations.
#include <algorithm>
#include <cmath>
#include <tuple>

#include <fmt/format.h>

#include "report/canvas.hpp"
#include "report/colormap.hpp"
#include "report/seed_charts.hpp"

namespace neuronmap::report {
namespace {

constexpr double kPi = 3.14159265358979323846;
const Rgb kInk{0.13, 0.13, 0.13};
const Rgb kMuted{0.38, 0.38, 0.38};

}  // namespace

void draw_network(const std::string& path, ImageFormat format, const LayerSnapshot& layer, const SnapshotLabel& at) {
  const std::int64_t n = layer.n_neurons;
  // The largest groups first, as many whole groups as fit the neuron budget (at least one).
  std::vector<const Group*> groups;
  for (const auto& g : layer.groups) groups.push_back(&g);
  std::stable_sort(groups.begin(), groups.end(),
                   [](const Group* a, const Group* b) { return a->group_size() > b->group_size(); });
  std::int64_t placed_count = 0;
  std::size_t shown = 0;
  for (; shown < groups.size(); ++shown) {
    const auto size = static_cast<std::int64_t>(groups[shown]->group_size());
    if (shown > 0 && placed_count + size > kMaxNetworkNeurons) break;
    placed_count += size;
  }
  groups.resize(shown);

  const double size_px = 760, left = 40, top = 92, legend_x = left + size_px + 30;
  Canvas canvas(path, format, static_cast<int>(legend_x + 260), static_cast<int>(top + size_px + 40));
  const Font title_font{18.0, true, kInk};
  canvas.text(left, 30,
              canvas.elide(fmt::format("Groups as a network \u2014 layer {}, epoch {}", layer.name, at.epoch),
                           size_px + 240, title_font),
              title_font);

  // Positions: group k's centre on a circle, its members on a small circle around that centre.
  const double cx = left + size_px / 2, cy = top + size_px / 2;
  const auto count = static_cast<double>(groups.size());
  const double ring = groups.size() <= 1 ? 0.0 : size_px * 0.34;
  const double max_radius = groups.size() <= 1 ? size_px * 0.38 : std::min(size_px * 0.13, ring * std::sin(kPi / count) * 0.85);
  std::size_t largest = 1;
  for (const auto* g : groups) largest = std::max(largest, g->group_size());
  std::vector<double> px(static_cast<std::size_t>(std::max<std::int64_t>(n, 0)), NAN), py(px.size(), NAN);
  std::vector<int> group_at(px.size(), -1);
  std::vector<std::tuple<double, double, int>> centres;
  for (std::size_t k = 0; k < groups.size(); ++k) {
    const double angle = 2 * kPi * static_cast<double>(k) / std::max(count, 1.0) - kPi / 2;
    const double gx = cx + ring * std::cos(angle), gy = cy + ring * std::sin(angle);
    const auto size = static_cast<double>(groups[k]->group_size());
    const double radius = std::max(10.0, max_radius * std::sqrt(size / static_cast<double>(largest)));
    centres.emplace_back(gx, gy, groups[k]->group_id);
    std::size_t j = 0;
    for (auto i : groups[k]->neuron_indices) {
      if (i < 0 || i >= n) continue;
      const double a = 2 * kPi * static_cast<double>(j++) / size;
      px[static_cast<std::size_t>(i)] = size <= 1 ? gx : gx + radius * std::cos(a);
      py[static_cast<std::size_t>(i)] = size <= 1 ? gy : gy + radius * std::sin(a);
      group_at[static_cast<std::size_t>(i)] = groups[k]->group_id;
    }
  }

  // Edges among the placed neurons with |r| >= the edge threshold, strongest kept.
  struct Edge {
    std::int32_t a, b;
    float r;
  };
  std::vector<Edge> edges;
  const bool has_matrix = n > 0 && static_cast<std::int64_t>(layer.correlation.size()) == n * n;
  std::vector<std::int32_t> placed;
  for (std::int64_t i = 0; i < n; ++i)
    if (std::isfinite(px[static_cast<std::size_t>(i)])) placed.push_back(static_cast<std::int32_t>(i));
  if (has_matrix)
    for (std::size_t p = 0; p < placed.size(); ++p)
      for (std::size_t q = p + 1; q < placed.size(); ++q) {
        const float r = layer.correlation[static_cast<std::size_t>(placed[p]) * static_cast<std::size_t>(n) +
                                          static_cast<std::size_t>(placed[q])];
        if (std::isfinite(r) && std::fabs(r) >= kNetworkEdgeThreshold) edges.push_back({placed[p], placed[q], r});
      }
  const std::size_t all_edges = edges.size();
  std::sort(edges.begin(), edges.end(), [](const Edge& a, const Edge& b) { return std::fabs(a.r) > std::fabs(b.r); });
  if (edges.size() > static_cast<std::size_t>(kMaxNetworkEdges)) edges.resize(static_cast<std::size_t>(kMaxNetworkEdges));
  std::int64_t within = 0;
  for (const auto& e : edges) within += group_at[static_cast<std::size_t>(e.a)] == group_at[static_cast<std::size_t>(e.b)];

  std::string info = fmt::format("{} of {} groups, {} neurons \u00b7 {} edges with |r| \u2265 {:.1f}", groups.size(),
                                 layer.groups.size(), placed.size(), all_edges, kNetworkEdgeThreshold);
  if (edges.size() < all_edges) info += fmt::format(" (the strongest {} drawn)", edges.size());
  info += fmt::format(" \u00b7 {} inside groups, {} between", within, static_cast<std::int64_t>(edges.size()) - within);
  if (!has_matrix) info = "no correlation matrix stored for this layer: neurons without edges";
  canvas.text(left, 52, canvas.elide(info, size_px + 240, {12.5, false, kMuted}), {12.5, false, kMuted});
  if (groups.empty())
    canvas.text(cx, cy, layer.n_neurons <= 0 ? "no activations captured" : "no groups in this layer",
                {14.0, false, kMuted}, Align::center, Baseline::middle);

  // Weakest edges first, so the strong ones are drawn on top.
  const double edge_width = edges.size() > 1500 ? 0.5 : edges.size() > 300 ? 0.8 : 1.3;
  for (auto it = edges.rbegin(); it != edges.rend(); ++it) {
    const auto a = static_cast<std::size_t>(it->a), b = static_cast<std::size_t>(it->b);
    const double strength = (std::fabs(it->r) - kNetworkEdgeThreshold) / (1.0 - kNetworkEdgeThreshold);
    canvas.line(px[a], py[a], px[b], py[b], correlation_color(it->r), edge_width, 0.25 + 0.6 * strength);
  }
  const double node = placed.size() <= 80 ? 6.0 : placed.size() <= 300 ? 4.0 : 2.8;
  cairo_t* cr = canvas.cr();
  for (auto i : placed) {
    const auto k = static_cast<std::size_t>(i);
    cairo_new_path(cr);
    cairo_arc(cr, px[k], py[k], node, 0, 2 * kPi);
    canvas.set_color(group_color(group_at[k]));
    cairo_fill_preserve(cr);
    canvas.set_color({1, 1, 1}, 0.9);
    cairo_set_line_width(cr, node > 3 ? 0.9 : 0.4);
    cairo_stroke(cr);
    if (placed.size() <= 48)
      canvas.text(px[k] + node + 2, py[k] - node, std::to_string(i), {9.5, false, kMuted});
  }
  for (const auto& [gx, gy, id] : centres) {
    const std::string name = "G" + std::to_string(id);
    const Font f{12.0, true, group_color(id)};
    const double tw = canvas.text_width(name, f);
    canvas.fill_rect(gx - tw / 2 - 3, gy - 9, tw + 6, 18, {1, 1, 1}, 0.8);
    canvas.text(gx, gy, name, f, Align::center, Baseline::middle);
  }

  // Legend: edge colours, then the groups shown.
  canvas.text(legend_x, top + 4, "Edges: correlation r", {13.5, true, kInk}, Align::left, Baseline::top);
  double ly = top + 36;
  for (double r : {1.0, 0.75, kNetworkEdgeThreshold, -kNetworkEdgeThreshold, -0.75, -1.0}) {
    canvas.line(legend_x, ly, legend_x + 30, ly, correlation_color(r), 2.5);
    canvas.text(legend_x + 38, ly, fmt::format("{:+.2f}", r), {11.5, false, kInk}, Align::left, Baseline::middle);
    ly += 18;
  }
  ly += 14;
  canvas.text(legend_x, ly, "Groups", {13.5, true, kInk}, Align::left, Baseline::top);
  ly += 30;
  for (std::size_t k = 0; k < groups.size() && ly < top + size_px - 20; ++k) {
    canvas.fill_rect(legend_x, ly - 5, 11, 11, group_color(groups[k]->group_id));
    canvas.text(legend_x + 18, ly,
                fmt::format("G{}  {} neurons, cohesion {:.2f}", groups[k]->group_id, groups[k]->group_size(),
                            groups[k]->cohesion_score),
                {11.5, false, kInk}, Align::left, Baseline::middle);
    ly += 19;
  }
  if (groups.size() < layer.groups.size())
    canvas.text(legend_x, ly, fmt::format("{} smaller groups not drawn", layer.groups.size() - groups.size()),
                {11.5, false, kMuted}, Align::left, Baseline::middle);
  canvas.finish();
}

}  // namespace neuronmap::report
