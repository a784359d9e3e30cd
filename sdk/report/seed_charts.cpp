// The original tool's views of a layer, drawn from its sample rows with cairo. Values are placed by
// block means when there are more rows or neurons than pixels to give them.
#include "report/seed_charts.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "report/canvas.hpp"
#include "report/colormap.hpp"
#include "report/embedding.hpp"

namespace neuronmap::report {
namespace {

constexpr double kPi = 3.14159265358979323846;
const Rgb kInk{0.13, 0.13, 0.13};
const Rgb kMuted{0.38, 0.38, 0.38};

std::string group_name(int id) { return id < 0 ? "ungrouped" : "G" + std::to_string(id); }
std::string format_loss(double loss) { return std::isfinite(loss) ? fmt::format("{:.4g}", loss) : "n/a"; }

/// Paints `colors` (rows x cols cells, row-major ARGB) into a w x h pixel rectangle at (x, y).
void paint_cells(Canvas& canvas, const std::vector<std::uint32_t>& colors, std::int64_t rows, std::int64_t cols,
                 double x, double y, int w, int h) {
  cairo_surface_t* image = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  cairo_surface_flush(image);
  unsigned char* data = cairo_image_surface_get_data(image);
  const int stride = cairo_image_surface_get_stride(image);
  for (int py = 0; py < h; ++py) {
    auto* row = reinterpret_cast<std::uint32_t*>(data + static_cast<std::ptrdiff_t>(py) * stride);
    const std::int64_t r = std::min<std::int64_t>(rows - 1, py * rows / h);
    for (int px = 0; px < w; ++px)
      row[px] = colors[static_cast<std::size_t>(r * cols + std::min<std::int64_t>(cols - 1, px * cols / w))];
  }
  cairo_surface_mark_dirty(image);
  cairo_t* cr = canvas.cr();
  cairo_save(cr);
  cairo_set_source_surface(cr, image, x, y);
  cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
  cairo_rectangle(cr, x, y, w, h);
  cairo_fill(cr);
  cairo_restore(cr);
  cairo_surface_destroy(image);
}

/// A vertical viridis colour bar from `lo` (bottom) to `hi` (top).
void draw_value_bar(Canvas& canvas, double x, double y, double height, double lo, double hi, const std::string& label) {
  const double width = 18;
  cairo_pattern_t* gradient = cairo_pattern_create_linear(0, y + height, 0, y);
  for (int k = 0; k <= 16; ++k) {
    const Rgb c = viridis(k / 16.0);
    cairo_pattern_add_color_stop_rgb(gradient, k / 16.0, c.r, c.g, c.b);
  }
  cairo_rectangle(canvas.cr(), x, y, width, height);
  cairo_set_source(canvas.cr(), gradient);
  cairo_fill(canvas.cr());
  cairo_pattern_destroy(gradient);
  canvas.stroke_rect(x, y, width, height, kMuted, 0.8);
  const Font tick{11.5, false, kInk};
  const auto ticks = nice_ticks(lo, hi, 5);
  const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : 1.0;
  for (double v : ticks) {
    if (v < lo || v > hi) continue;
    const double py = y + height * (1.0 - (v - lo) / (hi - lo));
    canvas.line(x + width, py, x + width + 4, py, kMuted, 0.8);
    canvas.text(x + width + 7, py, tick_label(v, step), tick, Align::left, Baseline::middle);
  }
  canvas.text(x + width + 56, y + height / 2, label, {12.5, false, kInk}, Align::center, Baseline::alphabetic,
              -kPi / 2);
}

/// Robust colour range: the 1st and 99th percentiles of the finite values (a unit range if degenerate).
std::pair<double, double> value_range(const std::vector<double>& values) {
  std::vector<double> finite;
  for (double v : values)
    if (std::isfinite(v)) finite.push_back(v);
  if (finite.empty()) return {0.0, 1.0};
  std::sort(finite.begin(), finite.end());
  const auto at = [&](double q) { return finite[static_cast<std::size_t>(q * static_cast<double>(finite.size() - 1))]; };
  double lo = at(0.01), hi = at(0.99);
  if (!(hi > lo)) lo = finite.front(), hi = finite.back();
  if (!(hi > lo)) lo -= 0.5, hi += 0.5;
  return {lo, hi};
}

}  // namespace

SampleRows sample_rows(const LayerSnapshot& layer) {
  SampleRows out;
  const std::int64_t n = layer.n_neurons;
  if (n <= 0 || layer.reservoir.empty() || layer.reservoir.size() % static_cast<std::size_t>(n) != 0) return out;
  out.data = layer.reservoir.data();
  out.rows = static_cast<std::int64_t>(layer.reservoir.size()) / n;
  out.cols = n;
  return out;
}

std::vector<double> group_means(const SampleRows& rows, const std::vector<Group>& groups) {
  const auto g_count = static_cast<std::int64_t>(groups.size());
  std::vector<double> out(static_cast<std::size_t>(rows.rows * g_count), std::numeric_limits<double>::quiet_NaN());
  for (std::int64_t g = 0; g < g_count; ++g) {
    std::vector<std::int32_t> members;
    for (auto i : groups[static_cast<std::size_t>(g)].neuron_indices)
      if (i >= 0 && i < rows.cols) members.push_back(i);
    if (members.empty()) continue;
    for (std::int64_t r = 0; r < rows.rows; ++r) {
      const float* row = rows.data + r * rows.cols;
      double sum = 0;
      for (auto i : members) sum += row[i];
      out[static_cast<std::size_t>(r * g_count + g)] = sum / static_cast<double>(members.size());
    }
  }
  return out;
}

std::vector<std::int32_t> most_active_group(const std::vector<double>& means, std::int64_t rows, std::int64_t groups) {
  std::vector<std::int32_t> out(static_cast<std::size_t>(rows), -1);
  for (std::int64_t r = 0; r < rows; ++r) {
    double best = -std::numeric_limits<double>::infinity();
    for (std::int64_t g = 0; g < groups; ++g) {
      const double v = means[static_cast<std::size_t>(r * groups + g)];
      if (std::isfinite(v) && v > best) best = v, out[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(g);
    }
  }
  return out;
}

void draw_activation_heatmap(const std::string& path, ImageFormat format, const LayerSnapshot& layer,
                             const GroupOrder& order, const SnapshotLabel& at) {
  const SampleRows rows = sample_rows(layer);
  const std::int64_t n = rows.cols, r_count = rows.rows;
  const std::int64_t cells_x = std::min(n, kMaxHeatmapSide), cells_y = std::min(r_count, kMaxHeatmapRows);
  // Block means: cell (y, x) averages rows [y*R/cy, (y+1)*R/cy) of the neurons at positions [x*N/cx, ...).
  std::vector<double> cells(static_cast<std::size_t>(cells_x * cells_y), 0.0);
  std::vector<double> counts(cells.size(), 0.0);
  for (std::int64_t r = 0; r < r_count; ++r) {
    const std::int64_t cy = r * cells_y / r_count;
    const float* row = rows.data + r * n;
    for (std::int64_t p = 0; p < n; ++p) {
      const float v = row[order.order[static_cast<std::size_t>(p)]];
      if (!std::isfinite(v)) continue;
      const auto k = static_cast<std::size_t>(cy * cells_x + p * cells_x / n);
      cells[k] += v;
      counts[k] += 1;
    }
  }
  for (std::size_t k = 0; k < cells.size(); ++k)
    cells[k] = counts[k] > 0 ? cells[k] / counts[k] : std::numeric_limits<double>::quiet_NaN();
  const auto [lo, hi] = value_range(cells);
  std::vector<std::uint32_t> colors(cells.size());
  for (std::size_t k = 0; k < cells.size(); ++k)
    colors[k] = std::isfinite(cells[k]) ? viridis((cells[k] - lo) / (hi - lo)).argb() : nan_color().argb();

  const int w = static_cast<int>(std::clamp<std::int64_t>(n * 14, 560, kMaxHeatmapSide));
  const int h = static_cast<int>(std::clamp<std::int64_t>(r_count * 6, 360, kMaxHeatmapRows));
  const double left = 96, top = 124, right = 150, bottom = 70;
  Canvas canvas(path, format, static_cast<int>(left + w + right), static_cast<int>(top + h + bottom));
  const Font title_font{18.0, true, kInk};
  canvas.text(left, 30,
              canvas.elide(fmt::format("Activations by group \u2014 layer {}, epoch {}", layer.name, at.epoch),
                           w + right - 20, title_font),
              title_font);
  std::string info = fmt::format("{} samples \u00d7 {} neurons \u00b7 {} groups \u00b7 neurons ordered by group \u00b7 loss {}",
                                 r_count, n, layer.groups.size(), format_loss(at.loss));
  if (cells_y < r_count || cells_x < n) info += fmt::format(" \u00b7 shown as {}\u00d7{} block means", cells_y, cells_x);
  canvas.text(left, 52, canvas.elide(info, w + right - 20, {12.5, false, kMuted}), {12.5, false, kMuted});

  paint_cells(canvas, colors, cells_y, cells_x, left, top, w, h);
  // The group colour bar above the columns, group names above it, thin separators between groups.
  const double scale = static_cast<double>(w) / static_cast<double>(n);
  const Font group_font{11.0, true, kInk};
  for (const auto& b : order.blocks) {
    const double x0 = left + static_cast<double>(b.begin) * scale, bw = static_cast<double>(b.end - b.begin) * scale;
    const Rgb c = b.group_id < 0 ? Rgb{0.86, 0.86, 0.86} : group_color(b.group_id);
    canvas.fill_rect(x0, top - 22, bw, 16, c);
    const std::string name = group_name(b.group_id);
    if (bw >= canvas.text_width(name, group_font) + 4)
      canvas.text(x0 + bw / 2, top - 28, name, group_font, Align::center, Baseline::bottom);
    if (b.begin > 0) canvas.line(x0, top - 22, x0, top + h, {1, 1, 1}, n > 300 ? 0.6 : 1.2, 0.9);
  }
  canvas.text(left - 8, top - 14, "group", {11.0, false, kMuted}, Align::right, Baseline::middle);
  canvas.stroke_rect(left, top, w, h, kMuted, 0.8);
  // Row numbers at a few rows (the rows are kept in sample order; their ids are internal ordinals).
  const Font tick{10.5, false, kMuted};
  for (int k = 0; k <= 4 && r_count > 0; ++k) {
    const std::int64_t r = std::min<std::int64_t>(r_count - 1, k * (r_count - 1) / 4);
    const double py = top + (static_cast<double>(r) + 0.5) * h / static_cast<double>(r_count);
    canvas.line(left - 4, py, left, py, kMuted, 0.8);
    canvas.text(left - 7, py, std::to_string(r), tick, Align::right, Baseline::middle);
  }
  const Font axis_font{12.5, false, kInk};
  canvas.text(left + w / 2.0, top + h + 30, "neurons, ordered by group", axis_font, Align::center);
  canvas.text(26, top + h / 2.0, "samples, in sample order", axis_font, Align::center, Baseline::alphabetic, -kPi / 2);
  draw_value_bar(canvas, left + w + 30, top, h, lo, hi, "activation (1st\u201399th percentile)");
  canvas.finish();
}

void draw_sample_scatter(const std::string& path, ImageFormat format, const LayerSnapshot& layer,
                         const SnapshotLabel& at, std::uint64_t seed) {
  const SampleRows rows = sample_rows(layer);
  const Pca pca = principal_components(rows.data, rows.rows, rows.cols, 2, seed);
  const std::vector<double> zeros(static_cast<std::size_t>(rows.rows), 0.0);
  const std::vector<double>& xs = pca.scores.empty() ? zeros : pca.scores[0];
  const std::vector<double>& ys = pca.scores.size() > 1 ? pca.scores[1] : zeros;
  const auto g_count = static_cast<std::int64_t>(layer.groups.size());
  const auto best = most_active_group(group_means(rows, layer.groups), rows.rows, g_count);

  const double plot_x = 96, plot_y = 92, plot_w = 700, plot_h = 560, legend_x = plot_x + plot_w + 34;
  Canvas canvas(path, format, static_cast<int>(legend_x + 250), static_cast<int>(plot_y + plot_h + 70));
  const Font title_font{18.0, true, kInk};
  canvas.text(plot_x, 30,
              canvas.elide(fmt::format("Samples in 2-D \u2014 layer {}, epoch {}", layer.name, at.epoch), plot_w + 240,
                           title_font),
              title_font);
  canvas.text(plot_x, 52,
              canvas.elide(fmt::format("PCA of activations \u00b7 {} samples \u00d7 {} neurons \u00b7 coloured by the "
                                       "most active group \u00b7 \u2715 group centres",
                                       rows.rows, rows.cols),
                           plot_w + 240, {12.5, false, kMuted}),
              {12.5, false, kMuted});
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
  for (std::int64_t i = 0; i < rows.rows; ++i) {
    const auto k = static_cast<std::size_t>(i);
    if (!std::isfinite(xs[k]) || !std::isfinite(ys[k])) continue;
    x_lo = std::min(x_lo, xs[k]), x_hi = std::max(x_hi, xs[k]), y_lo = std::min(y_lo, ys[k]), y_hi = std::max(y_hi, ys[k]);
  }
  padded_range(x_lo, x_hi, 0.07);
  padded_range(y_lo, y_hi, 0.07);
  Plot plot(canvas, plot_x, plot_y, plot_w, plot_h, x_lo, x_hi, y_lo, y_hi);
  const auto pc = [&](std::size_t c) {
    return c < pca.explained.size() ? fmt::format("PC{} ({:.1f}% of variance)", c + 1, 100 * pca.explained[c])
                                    : fmt::format("PC{}", c + 1);
  };
  plot.axes(pc(0), pc(1), "");
  const double radius = rows.rows <= 200 ? 4.5 : rows.rows <= 1000 ? 3.2 : 2.2;
  cairo_t* cr = canvas.cr();
  plot.clip();
  std::vector<double> sx(static_cast<std::size_t>(g_count), 0.0), sy(sx.size(), 0.0), count(sx.size(), 0.0);
  for (std::int64_t i = 0; i < rows.rows; ++i) {
    const auto k = static_cast<std::size_t>(i);
    if (!std::isfinite(xs[k]) || !std::isfinite(ys[k])) continue;
    const int g = best[k];
    if (g >= 0) sx[static_cast<std::size_t>(g)] += xs[k], sy[static_cast<std::size_t>(g)] += ys[k], count[static_cast<std::size_t>(g)] += 1;
    cairo_new_path(cr);
    cairo_arc(cr, plot.px(xs[k]), plot.py(ys[k]), radius, 0, 2 * kPi);
    canvas.set_color(group_color(g < 0 ? -1 : layer.groups[static_cast<std::size_t>(g)].group_id), 0.75);
    cairo_fill(cr);
  }
  // Group centres: the mean position of the samples each group is most active on.
  for (std::int64_t g = 0; g < g_count; ++g) {
    const auto k = static_cast<std::size_t>(g);
    if (count[k] < 1) continue;
    const double cx = plot.px(sx[k] / count[k]), cy = plot.py(sy[k] / count[k]);
    const int id = layer.groups[k].group_id;
    for (const auto& [width, color] : {std::pair{5.0, Rgb{1, 1, 1}}, std::pair{2.6, group_color(id)}}) {
      canvas.line(cx - 8, cy - 8, cx + 8, cy + 8, color, width);
      canvas.line(cx - 8, cy + 8, cx + 8, cy - 8, color, width);
    }
    if (g_count <= 24) canvas.text(cx + 10, cy - 10, group_name(id), {11.5, true, kInk});
  }
  plot.unclip();

  canvas.text(legend_x, plot_y + 4, "Most active group", {13.5, true, kInk}, Align::left, Baseline::top);
  const double row_h = 19;
  const int fits = static_cast<int>((plot_h - 60) / row_h);
  double ly = plot_y + 34;
  if (g_count == 0)
    canvas.text(legend_x, ly, "no groups in this layer", {11.5, false, kMuted}, Align::left, Baseline::middle);
  for (std::int64_t g = 0; g < g_count; ++g) {
    if (g == fits) {
      canvas.text(legend_x, ly, fmt::format("\u2026 and {} more groups", g_count - g), {11.5, false, kMuted},
                  Align::left, Baseline::middle);
      break;
    }
    const auto& group = layer.groups[static_cast<std::size_t>(g)];
    canvas.fill_rect(legend_x, ly - 5, 11, 11, group_color(group.group_id));
    canvas.text(legend_x + 18, ly,
                fmt::format("{}  {} samples, {} neurons", group_name(group.group_id),
                            static_cast<std::int64_t>(count[static_cast<std::size_t>(g)]), group.neuron_indices.size()),
                {11.5, false, kInk}, Align::left, Baseline::middle);
    ly += row_h;
  }
  canvas.finish();
}

void draw_size_cohesion(const std::string& path, ImageFormat format, const std::vector<const LayerSnapshot*>& layers,
                        const SnapshotLabel& at) {
  constexpr std::size_t kMaxColumns = 40;
  std::size_t columns = 1;
  for (const auto* l : layers) columns = std::max(columns, std::min(kMaxColumns, l->groups.size()));
  const double cell = columns <= 12 ? 52 : columns <= 24 ? 36 : 26;
  const double left = 190, top = 104, right = 150;
  const double w = cell * static_cast<double>(columns), h = cell * static_cast<double>(std::max<std::size_t>(1, layers.size()));
  Canvas canvas(path, format, static_cast<int>(std::max(left + w + right, 720.0)),
                static_cast<int>(std::max(top + h + 80, 420.0)));
  canvas.text(24, 34, fmt::format("All layers \u2014 group size and cohesion, epoch {}", at.epoch), {18.0, true, kInk});
  canvas.text(24, 56,
              fmt::format("{} layers \u00b7 loss {} \u00b7 one cell per group, largest first: its size written in it, "
                          "its cohesion as colour",
                          layers.size(), format_loss(at.loss)),
              {12.5, false, kMuted});
  const Font name_font{12.5, true, kInk};
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const LayerSnapshot& layer = *layers[l];
    const double y = top + cell * static_cast<double>(l);
    canvas.text(left - 10, y + cell / 2 - 6, canvas.elide(layer.name, left - 30, name_font), name_font, Align::right,
                Baseline::middle);
    canvas.text(left - 10, y + cell / 2 + 9, fmt::format("{} groups, {} neurons", layer.groups.size(), layer.n_neurons),
                {10.5, false, kMuted}, Align::right, Baseline::middle);
    std::vector<const Group*> by_size;
    for (const auto& g : layer.groups) by_size.push_back(&g);
    std::stable_sort(by_size.begin(), by_size.end(),
                     [](const Group* a, const Group* b) { return a->group_size() > b->group_size(); });
    if (by_size.empty()) {
      canvas.fill_rect(left, y + 2, w, cell - 4, {0.95, 0.95, 0.95});
      canvas.text(left + 8, y + cell / 2, layer.n_neurons <= 0 ? "no activations captured" : "no groups",
                  {11.5, false, kMuted}, Align::left, Baseline::middle);
      continue;
    }
    for (std::size_t c = 0; c < by_size.size() && c < kMaxColumns; ++c) {
      const Group& g = *by_size[c];
      const double x = left + cell * static_cast<double>(c);
      const Rgb color = viridis(g.cohesion_score);
      canvas.fill_rect(x + 1, y + 1, cell - 2, cell - 2, color);
      const double luminance = 0.299 * color.r + 0.587 * color.g + 0.114 * color.b;
      canvas.text(x + cell / 2, y + cell / 2, std::to_string(g.group_size()),
                  {cell >= 36 ? 12.0 : 9.5, true, luminance > 0.5 ? kInk : Rgb{1, 1, 1}}, Align::center,
                  Baseline::middle);
    }
    if (by_size.size() > kMaxColumns)
      canvas.text(left + w + 6, y + cell / 2, fmt::format("+{}", by_size.size() - kMaxColumns), {10.5, false, kMuted},
                  Align::left, Baseline::middle);
  }
  canvas.text(left + w / 2, top + h + 26, "groups of the layer, largest first (number: neurons in the group)",
              {12.5, false, kInk}, Align::center);
  draw_value_bar(canvas, left + w + 44, top, std::max(h, 160.0), 0.0, 1.0, "cohesion (mean r inside)");
  canvas.finish();
}

}  // namespace neuronmap::report
