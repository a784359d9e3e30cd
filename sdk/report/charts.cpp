// The pictures, drawn with cairo. Matrices are rasterised at their final pixel size (no scaling at
// view time, so PNG and SVG look the same); everything else is vector.
#include "report/charts.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "report/canvas.hpp"
#include "report/colormap.hpp"

namespace neuronmap::report {
namespace {

constexpr double kHalfPi = 1.57079632679489661923;
const Rgb kInk{0.13, 0.13, 0.13};
const Rgb kMuted{0.38, 0.38, 0.38};

std::string group_name(int id) { return id < 0 ? "ungrouped" : "G" + std::to_string(id); }

std::string format_loss(double loss) { return std::isfinite(loss) ? fmt::format("{:.4g}", loss) : "n/a"; }

/// Paints `m` (group-ordered, possibly block-averaged) into a side x side square at (x, y).
void paint_matrix(Canvas& canvas, const ReducedMatrix& m, double x, double y, int side) {
  cairo_surface_t* image = cairo_image_surface_create(CAIRO_FORMAT_RGB24, side, side);
  cairo_surface_flush(image);
  unsigned char* data = cairo_image_surface_get_data(image);
  const int stride = cairo_image_surface_get_stride(image);
  // One colour lookup per cell, then pixels copy them.
  std::vector<std::uint32_t> colors(m.values.size());
  for (std::size_t k = 0; k < m.values.size(); ++k) colors[k] = correlation_color(m.values[k]).argb();
  std::vector<std::int64_t> cell_at(static_cast<std::size_t>(side));
  for (int p = 0; p < side; ++p) cell_at[static_cast<std::size_t>(p)] = std::min<std::int64_t>(m.cells - 1, p * m.cells / side);
  for (int py = 0; py < side; ++py) {
    auto* row = reinterpret_cast<std::uint32_t*>(data + static_cast<std::ptrdiff_t>(py) * stride);
    const auto base = static_cast<std::size_t>(cell_at[static_cast<std::size_t>(py)] * m.cells);
    for (int px = 0; px < side; ++px) row[px] = colors[base + static_cast<std::size_t>(cell_at[static_cast<std::size_t>(px)])];
  }
  cairo_surface_mark_dirty(image);
  cairo_t* cr = canvas.cr();
  cairo_save(cr);
  cairo_set_source_surface(cr, image, x, y);
  cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
  cairo_rectangle(cr, x, y, side, side);
  cairo_fill(cr);
  cairo_restore(cr);
  cairo_surface_destroy(image);
}

/// Group boundaries over a matrix drawn at (x, y) with `side` pixels for `n` positions: thin lines
/// across at every block edge, a dark outline around each group's diagonal block.
void draw_boundaries(Canvas& canvas, const GroupOrder& order, double x, double y, double side, double outline) {
  const auto n = static_cast<double>(order.order.size());
  if (n <= 0) return;
  const double scale = side / n;
  for (const auto& b : order.blocks) {
    if (b.begin == 0) continue;
    const double p = static_cast<double>(b.begin) * scale;
    canvas.line(x + p, y, x + p, y + side, {0.1, 0.1, 0.1}, 0.6, 0.35);
    canvas.line(x, y + p, x + side, y + p, {0.1, 0.1, 0.1}, 0.6, 0.35);
  }
  for (const auto& b : order.blocks) {
    if (b.group_id < 0) continue;
    const double p = static_cast<double>(b.begin) * scale;
    const double w = static_cast<double>(b.end - b.begin) * scale;
    canvas.stroke_rect(x + p, y + p, w, w, {0.05, 0.05, 0.05}, outline);
  }
}

/// Colour strips along the left and top edges telling which group each position belongs to.
void draw_group_strips(Canvas& canvas, const GroupOrder& order, double x, double y, double side, double thickness) {
  const auto n = static_cast<double>(order.order.size());
  if (n <= 0) return;
  const double scale = side / n;
  for (const auto& b : order.blocks) {
    const double p = static_cast<double>(b.begin) * scale;
    const double w = static_cast<double>(b.end - b.begin) * scale;
    const Rgb c = b.group_id < 0 ? Rgb{0.86, 0.86, 0.86} : group_color(b.group_id);
    canvas.fill_rect(x - thickness - 3, y + p, thickness, w, c);
    canvas.fill_rect(x + p, y - thickness - 3, w, thickness, c);
  }
}

/// A vertical colour bar for r in [-1, 1].
void draw_color_bar(Canvas& canvas, double x, double y, double height, bool show_undefined) {
  const double width = 18;
  cairo_pattern_t* gradient = cairo_pattern_create_linear(0, y + height, 0, y);
  for (int k = 0; k <= 32; ++k) {
    const Rgb c = cool_warm(k / 32.0);
    cairo_pattern_add_color_stop_rgb(gradient, k / 32.0, c.r, c.g, c.b);
  }
  cairo_rectangle(canvas.cr(), x, y, width, height);
  cairo_set_source(canvas.cr(), gradient);
  cairo_fill(canvas.cr());
  cairo_pattern_destroy(gradient);
  canvas.stroke_rect(x, y, width, height, kMuted, 0.8);
  const Font tick{11.5, false, kInk};
  for (double v : {-1.0, -0.5, 0.0, 0.5, 1.0}) {
    const double py = y + height * (1.0 - (v + 1.0) / 2.0);
    canvas.line(x + width, py, x + width + 4, py, kMuted, 0.8);
    canvas.text(x + width + 7, py, v == 0 ? "0" : fmt::format("{:+.1f}", v), tick, Align::left, Baseline::middle);
  }
  canvas.text(x + width + 52, y + height / 2, "Pearson correlation r", {12.5, false, kInk}, Align::center,
              Baseline::alphabetic, -kHalfPi);
  if (show_undefined) {
    canvas.fill_rect(x, y + height + 14, width, 12, nan_color());
    canvas.stroke_rect(x, y + height + 14, width, 12, kMuted, 0.8);
    canvas.text(x + width + 7, y + height + 20, "undefined", {11.0, false, kMuted}, Align::left, Baseline::middle);
  }
}

}  // namespace

void draw_layer_heatmap(const std::string& path, ImageFormat format, const LayerSnapshot& layer,
                        const GroupOrder& order, const SnapshotLabel& at) {
  const ReducedMatrix m = reduce_matrix(layer, order, kMaxHeatmapSide);
  const std::int64_t n = layer.n_neurons;
  const int side = static_cast<int>(std::clamp<std::int64_t>(n, 640, kMaxHeatmapSide));
  const double left = 112, top = 96, right = 150, bottom = 74;
  Canvas canvas(path, format, static_cast<int>(left + side + right), static_cast<int>(top + side + bottom));
  const double scale = static_cast<double>(side) / static_cast<double>(n);

  const Font title_font{18.0, true, kInk};
  canvas.text(left, 30,
              canvas.elide(fmt::format("Neuron correlation \u2014 layer {}, epoch {}", layer.name, at.epoch),
                           side + right - 20, title_font),
              title_font);
  std::string info = fmt::format("{} neurons \u00b7 {} groups \u00b7 {} samples \u00b7 mean cohesion {:.3f} \u00b7 loss {}",
                                 n, layer.groups.size(), layer.samples, layer.mean_cohesion(), format_loss(at.loss));
  if (m.cells < n) info += fmt::format(" \u00b7 shown as {0}\u00d7{0} block means", m.cells);
  canvas.text(left, 52, canvas.elide(info, side + right - 20, {12.5, false, kMuted}), {12.5, false, kMuted});

  paint_matrix(canvas, m, left, top, side);
  draw_boundaries(canvas, order, left, top, side, n > 300 ? 1.0 : 1.6);
  draw_group_strips(canvas, order, left, top, side, 10);
  canvas.stroke_rect(left, top, side, side, kMuted, 0.8);

  // Group names along the left edge and under the matrix, where the block is big enough to hold them.
  const Font group_font{11.0, true, kInk};
  for (const auto& b : order.blocks) {
    const double p0 = static_cast<double>(b.begin) * scale, w = static_cast<double>(b.end - b.begin) * scale;
    const std::string name = group_name(b.group_id);
    if (w >= 13) canvas.text(left - 17, top + p0 + w / 2, name, group_font, Align::right, Baseline::middle);
    if (n > 64 && w >= canvas.text_width(name, group_font) + 4)
      canvas.text(left + p0 + w / 2, top + side + 8, name, group_font, Align::center, Baseline::top);
  }
  // Small layers: every column's neuron index under the matrix.
  if (n <= 64) {
    const Font index_font{scale >= 16 ? 10.0 : 8.5, false, kMuted};
    for (std::int64_t p = 0; p < n; ++p) {
      const double cx = left + (static_cast<double>(p) + 0.5) * scale;
      const std::string label = std::to_string(order.order[static_cast<std::size_t>(p)]);
      if (scale >= canvas.text_width(label, index_font) + 3)
        canvas.text(cx, top + side + 6, label, index_font, Align::center, Baseline::top);
      else
        canvas.text(cx, top + side + 4, label, index_font, Align::right, Baseline::middle, -kHalfPi);
    }
  }
  const Font axis_font{12.5, false, kInk};
  canvas.text(left + side / 2.0, top + side + 58,
              n <= 64 ? "neuron index (columns ordered by group)" : "neurons, ordered by group", axis_font,
              Align::center);
  canvas.text(34, top + side / 2.0, "neurons, ordered by group", axis_font, Align::center, Baseline::alphabetic,
              -kHalfPi);
  draw_color_bar(canvas, left + side + 30, top, side, m.any_nan);
  canvas.finish();
}

void draw_all_layers_heatmap(const std::string& path, ImageFormat format, const std::vector<const LayerSnapshot*>& layers,
                             const SnapshotLabel& at) {
  const int count = std::max<int>(1, static_cast<int>(layers.size()));
  const int cols = std::min(count, 4);
  const int rows = (count + cols - 1) / cols;
  const int panel = count > 8 ? 240 : 330;
  const double gap_x = 54, gap_y = 84, left = 40, top = 84, right = 130;
  const double width = left + cols * (panel + gap_x) + right;
  const double height = top + rows * (panel + gap_y);
  Canvas canvas(path, format, static_cast<int>(width), static_cast<int>(height));
  canvas.text(left, 34, fmt::format("All layers \u2014 neuron correlation by group, epoch {}", at.epoch),
              {18.0, true, kInk});
  canvas.text(left, 56,
              fmt::format("{} layers \u00b7 loss {} \u00b7 neurons ordered by group, outlines mark groups",
                          layers.size(), format_loss(at.loss)),
              {12.5, false, kMuted});
  bool any_nan = false;
  for (int k = 0; k < static_cast<int>(layers.size()); ++k) {
    const LayerSnapshot& layer = *layers[static_cast<std::size_t>(k)];
    const double x = left + 14 + (k % cols) * (panel + gap_x);
    const double y = top + 46 + (k / cols) * (panel + gap_y);
    const Font name_font{13.5, true, kInk};
    canvas.text(x, y - 30, canvas.elide(layer.name, panel, name_font), name_font);
    canvas.text(x, y - 16,
                fmt::format("{} neurons \u00b7 {} groups \u00b7 cohesion {:.2f}", layer.n_neurons, layer.groups.size(),
                            layer.mean_cohesion()),
                {11.0, false, kMuted});
    const GroupOrder order = order_by_group(layer);
    const ReducedMatrix m = reduce_matrix(layer, order, panel);
    if (m.cells == 0) {
      canvas.fill_rect(x, y, panel, panel, {0.95, 0.95, 0.95});
      canvas.stroke_rect(x, y, panel, panel, {0.75, 0.75, 0.75}, 0.8);
      canvas.text(x + panel / 2.0, y + panel / 2.0,
                  layer.n_neurons <= 0 ? "no activations captured" : "correlation matrix not stored",
                  {12.0, false, kMuted}, Align::center, Baseline::middle);
      continue;
    }
    any_nan = any_nan || m.any_nan;
    paint_matrix(canvas, m, x, y, panel);
    draw_boundaries(canvas, order, x, y, panel, layer.n_neurons > 150 ? 0.8 : 1.2);
    draw_group_strips(canvas, order, x, y, panel, 7);
    canvas.stroke_rect(x, y, panel, panel, kMuted, 0.8);
  }
  const double bar_height = std::min<double>(panel * rows, 420);
  draw_color_bar(canvas, width - right + 10, top + 46, bar_height, any_nan);
  canvas.finish();
}

void draw_scatter(const std::string& path, ImageFormat format, const LayerSnapshot& layer, const GroupOrder& order,
                  const Embedding& embedding, const SnapshotLabel& at) {
  const double plot_x = 96, plot_y = 92, plot_w = 700, plot_h = 560, legend_x = plot_x + plot_w + 34;
  Canvas canvas(path, format, static_cast<int>(legend_x + 250), static_cast<int>(plot_y + plot_h + 70));
  const Font title_font{18.0, true, kInk};
  canvas.text(plot_x, 30,
              canvas.elide(fmt::format("Neurons in 2-D \u2014 layer {}, epoch {}", layer.name, at.epoch), plot_w + 240,
                           title_font),
              title_font);
  std::string subtitle = embedding.method + fmt::format(" \u00b7 {} neurons \u00b7 {} groups", layer.n_neurons,
                                                        layer.groups.size());
  if (!embedding.note.empty()) subtitle += " \u00b7 " + embedding.note;
  canvas.text(plot_x, 52, canvas.elide(subtitle, plot_w + 240, {12.5, false, kMuted}), {12.5, false, kMuted});

  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
  for (std::size_t i = 0; i < embedding.x.size(); ++i) {
    if (!std::isfinite(embedding.x[i]) || !std::isfinite(embedding.y[i])) continue;
    x_lo = std::min(x_lo, embedding.x[i]), x_hi = std::max(x_hi, embedding.x[i]);
    y_lo = std::min(y_lo, embedding.y[i]), y_hi = std::max(y_hi, embedding.y[i]);
  }
  padded_range(x_lo, x_hi, 0.07);
  padded_range(y_lo, y_hi, 0.07);
  Plot plot(canvas, plot_x, plot_y, plot_w, plot_h, x_lo, x_hi, y_lo, y_hi);
  plot.axes(embedding.x_label, embedding.y_label, "");

  const auto count = embedding.neurons.size();
  const double radius = count <= 60 ? 6.5 : count <= 300 ? 4.5 : count <= 2000 ? 3.0 : 2.0;
  cairo_t* cr = canvas.cr();
  plot.clip();
  // Ungrouped first, so that groups stay visible on top.
  for (int pass = 0; pass < 2; ++pass)
    for (std::size_t i = 0; i < count; ++i) {
      const auto neuron = embedding.neurons[i];
      const int group = neuron < static_cast<std::int32_t>(order.group_of.size())
                            ? order.group_of[static_cast<std::size_t>(neuron)] : -1;
      if ((group >= 0) != (pass == 1)) continue;
      if (!std::isfinite(embedding.x[i]) || !std::isfinite(embedding.y[i])) continue;
      const double cx = plot.px(embedding.x[i]), cy = plot.py(embedding.y[i]);
      cairo_new_path(cr);
      cairo_arc(cr, cx, cy, group < 0 ? radius * 0.8 : radius, 0, 4 * kHalfPi);
      canvas.set_color(group_color(group), group < 0 ? 0.75 : 0.92);
      cairo_fill_preserve(cr);
      canvas.set_color({1, 1, 1}, 0.9);
      cairo_set_line_width(cr, radius > 3 ? 0.9 : 0.4);
      cairo_stroke(cr);
    }
  if (count <= 40) {
    for (std::size_t i = 0; i < count; ++i)
      if (std::isfinite(embedding.x[i]) && std::isfinite(embedding.y[i]))
        canvas.text(plot.px(embedding.x[i]) + radius + 2, plot.py(embedding.y[i]) - radius,
                    std::to_string(embedding.neurons[i]), {9.5, false, kMuted});
  }
  // Group names at their centroids (for a readable number of groups).
  if (layer.groups.size() <= 24) {
    for (const auto& b : order.blocks) {
      if (b.group_id < 0) continue;
      double sx = 0, sy = 0;
      int k = 0;
      for (std::size_t i = 0; i < count; ++i) {
        const auto neuron = embedding.neurons[i];
        if (neuron < static_cast<std::int32_t>(order.group_of.size()) &&
            order.group_of[static_cast<std::size_t>(neuron)] == b.group_id && std::isfinite(embedding.x[i]) &&
            std::isfinite(embedding.y[i]))
          sx += embedding.x[i], sy += embedding.y[i], ++k;
      }
      if (k < 2) continue;
      const double cx = plot.px(sx / k), cy = plot.py(sy / k);
      const std::string name = group_name(b.group_id);
      const Font f{11.5, true, kInk};
      const double tw = canvas.text_width(name, f);
      canvas.fill_rect(cx - tw / 2 - 3, cy - 8, tw + 6, 16, {1, 1, 1}, 0.75);
      canvas.text(cx, cy, name, {11.5, true, group_color(b.group_id)}, Align::center, Baseline::middle);
    }
  }
  plot.unclip();

  // Legend: one row per group (as many as fit), then the ungrouped neurons.
  canvas.text(legend_x, plot_y + 4, "Groups", {13.5, true, kInk}, Align::left, Baseline::top);
  const double row_h = 19;
  const int fits = static_cast<int>((plot_h - 60) / row_h);
  double ly = plot_y + 34;
  int shown = 0;
  std::int64_t ungrouped = 0;
  for (const auto& b : order.blocks)
    if (b.group_id < 0) ungrouped = b.end - b.begin;
  for (const auto& g : layer.groups) {
    if (shown == fits) {
      canvas.text(legend_x, ly, fmt::format("\u2026 and {} more groups", layer.groups.size() - static_cast<std::size_t>(shown)),
                  {11.5, false, kMuted}, Align::left, Baseline::middle);
      ly += row_h;
      break;
    }
    cairo_new_path(cr);
    cairo_arc(cr, legend_x + 6, ly, 5.5, 0, 4 * kHalfPi);
    canvas.set_color(group_color(g.group_id));
    cairo_fill(cr);
    canvas.text(legend_x + 18, ly,
                fmt::format("{}  {} neurons, cohesion {:.2f}{}", group_name(g.group_id), g.neuron_indices.size(),
                            g.cohesion_score, g.loose ? ", loose" : ""),
                {11.5, false, kInk}, Align::left, Baseline::middle);
    ly += row_h;
    ++shown;
  }
  if (ungrouped > 0) {
    cairo_new_path(cr);
    cairo_arc(cr, legend_x + 6, ly, 4.5, 0, 4 * kHalfPi);
    canvas.set_color(group_color(-1));
    cairo_fill(cr);
    canvas.text(legend_x + 18, ly, fmt::format("ungrouped  {} neurons", ungrouped), {11.5, false, kMuted},
                Align::left, Baseline::middle);
  }
  canvas.finish();
}

Rgb phase_color(const std::string& phase) {
  if (phase == "rapid") return {0.17, 0.63, 0.17};
  if (phase == "refinement") return {0.12, 0.47, 0.71};
  if (phase == "plateau") return {0.74, 0.74, 0.13};
  if (phase == "unstable") return {0.84, 0.15, 0.16};
  return {0.6, 0.6, 0.6};
}

void draw_timeline(const std::string& path, ImageFormat format, const TimelineData& data) {
  const double width = 1240, panel_w = 500, panel_h = 240, gap_y = 96;
  const double legend_top = 84;
  // Legend rows: layer names wrapped across the width.
  std::vector<std::pair<double, double>> legend_pos;
  {
    Canvas probe("/dev/null", ImageFormat::png, 1, 1);  // measuring only; never finished
    double lx = 80, ly = legend_top;
    for (const auto& name : data.layers) {
      const double w = 40 + probe.text_width(probe.elide(name, 220, {12.0}), {12.0});
      if (lx + w > width - 40) lx = 80, ly += 22;
      legend_pos.emplace_back(lx, ly);
      lx += w + 14;
    }
  }
  const double panels_top = (legend_pos.empty() ? legend_top : legend_pos.back().second) + 64;
  const double height = panels_top + 3 * panel_h + 2 * gap_y + 56;
  Canvas canvas(path, format, static_cast<int>(width), static_cast<int>(height));
  const auto n = data.epochs.size();
  canvas.text(80, 34, "Timeline \u2014 groups, cohesion, dead neurons, CKA and loss over the snapshots",
              {18.0, true, kInk});
  std::int64_t total_events = 0;
  for (auto c : data.event_counts) total_events += c;
  if (n > 0)
    canvas.text(80, 56,
                fmt::format("{} snapshots, epochs {} to {} \u00b7 {} layers \u00b7 {} learning events", n,
                            data.epochs.front(), data.epochs.back(), data.layers.size(), total_events),
                {12.5, false, kMuted});
  for (std::size_t l = 0; l < data.layers.size(); ++l) {
    const auto [lx, ly] = legend_pos[l];
    canvas.line(lx, ly, lx + 28, ly, series_color(static_cast<int>(l)), 2.5);
    canvas.text(lx + 34, ly, canvas.elide(data.layers[l], 220, {12.0}), {12.0, false, kInk}, Align::left,
                Baseline::middle);
  }

  double e_lo = n ? static_cast<double>(data.epochs.front()) : 0.0;
  double e_hi = n ? static_cast<double>(data.epochs.back()) : 1.0;
  for (auto e : data.epochs) e_lo = std::min(e_lo, static_cast<double>(e)), e_hi = std::max(e_hi, static_cast<double>(e));
  for (auto e : data.loss_epochs) e_lo = std::min(e_lo, static_cast<double>(e)), e_hi = std::max(e_hi, static_cast<double>(e));
  padded_range(e_lo, e_hi, 0.03);

  cairo_t* cr = canvas.cr();
  const auto draw_line = [&](Plot& plot, const std::vector<std::int64_t>& xs, const std::vector<double>& values,
                             const Rgb& color, bool markers, double line_width) {
    plot.clip();
    canvas.set_color(color);
    cairo_set_line_width(cr, line_width);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    bool drawing = false;
    for (std::size_t s = 0; s < xs.size() && s < values.size(); ++s) {
      if (!std::isfinite(values[s])) {
        drawing = false;  // a gap where the layer is absent or the value unknown
        continue;
      }
      const double x = plot.px(static_cast<double>(xs[s])), y = plot.py(values[s]);
      if (drawing) cairo_line_to(cr, x, y);
      else cairo_move_to(cr, x, y);
      drawing = true;
    }
    cairo_stroke(cr);
    if (markers)
      for (std::size_t s = 0; s < xs.size() && s < values.size(); ++s) {
        if (!std::isfinite(values[s])) continue;
        cairo_new_path(cr);
        cairo_arc(cr, plot.px(static_cast<double>(xs[s])), plot.py(values[s]), 3.2, 0, 4 * kHalfPi);
        canvas.set_color(color);
        cairo_fill(cr);
      }
    plot.unclip();
  };
  const auto highlight = [&](Plot& plot) {
    if (!data.highlight_epoch) return;
    const double x = plot.px(static_cast<double>(*data.highlight_epoch));
    const double dash[] = {5.0, 4.0};
    cairo_save(cr);
    cairo_set_dash(cr, dash, 2, 0);
    canvas.line(x, plot.y(), x, plot.y() + plot.h(), {0.2, 0.2, 0.2}, 1.0, 0.6);
    cairo_restore(cr);
  };
  const auto value_range = [](const std::vector<std::vector<double>>& series, double& lo, double& hi) {
    lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (const auto& v : series)
      for (double d : v)
        if (std::isfinite(d)) lo = std::min(lo, d), hi = std::max(hi, d);
    if (!std::isfinite(lo)) lo = 0, hi = 1;
    padded_range(lo, hi, 0.08);
  };
  const auto nothing = [&](double x, double y, double w, double h, const std::vector<std::vector<double>>& series,
                           const char* what) {
    for (const auto& v : series)
      for (double d : v)
        if (std::isfinite(d)) return;
    canvas.text(x + w / 2, y + h / 2, what, {12.5, false, kMuted}, Align::center, Baseline::middle);
  };
  const auto per_layer_panel = [&](int index, const std::string& title, const std::string& y_label,
                                   const std::vector<std::vector<double>>& series, double y_lo, double y_hi,
                                   const char* missing) {
    const double x = 100 + (index % 2) * (panel_w + 110);
    const double y = panels_top + (index / 2) * (panel_h + gap_y);
    double lo = y_lo, hi = y_hi;
    if (!std::isfinite(lo) || !std::isfinite(hi)) value_range(series, lo, hi);
    Plot plot(canvas, x, y, panel_w, panel_h, e_lo, e_hi, lo, hi);
    plot.axes("epoch", y_label, title, true);
    highlight(plot);
    for (std::size_t l = 0; l < series.size(); ++l)
      draw_line(plot, data.epochs, series[l], series_color(static_cast<int>(l)), n <= 60, 2.0);
    nothing(x, y, panel_w, panel_h, series, missing);
  };

  double max_groups = 1;
  for (const auto& v : data.groups)
    for (double d : v)
      if (std::isfinite(d)) max_groups = std::max(max_groups, d);
  double max_dead = 0.05;
  for (const auto& v : data.dead_rate)
    for (double d : v)
      if (std::isfinite(d)) max_dead = std::max(max_dead, d);
  per_layer_panel(0, "Groups found per layer", "groups", data.groups, 0, std::ceil(max_groups * 1.12 + 0.01),
                  "no values recorded");
  per_layer_panel(1, "Mean cohesion per layer", "mean cohesion (0\u20131)", data.cohesion, 0, 1.05,
                  "no groups in any snapshot");
  per_layer_panel(2, "Dead neurons per layer", "share of neurons dead", data.dead_rate, 0,
                  std::min(1.05, max_dead * 1.15), "no values recorded");
  per_layer_panel(3, "Representation change: linear CKA to the previous snapshot", "CKA (1: unchanged)", data.cka, 0,
                  1.05, "no CKA stored in this run");

  // The loss, full width: every epoch's loss where the file holds it, the snapshots' losses as dots,
  // the learning phase of each interval as a band, and the number of learning events at each snapshot.
  const double x = 100, y = panels_top + 2 * (panel_h + gap_y), w = 2 * panel_w + 110;
  std::vector<std::vector<double>> both = {data.loss, data.losses};
  double lo = 0, hi = 1;
  value_range(both, lo, hi);
  Plot plot(canvas, x, y, w, panel_h, e_lo, e_hi, lo, hi);
  plot.axes("epoch", "loss", "Training loss, learning phases and events", true);
  plot.clip();
  std::vector<std::string> phases_seen;
  for (std::size_t s = 1; s < n && s < data.phases.size(); ++s) {
    const auto& phase = data.phases[s];
    if (phase.empty()) continue;
    const double x0 = plot.px(static_cast<double>(data.epochs[s - 1])), x1 = plot.px(static_cast<double>(data.epochs[s]));
    canvas.fill_rect(x0, y, x1 - x0, panel_h, phase_color(phase), 0.13);
    if (std::find(phases_seen.begin(), phases_seen.end(), phase) == phases_seen.end()) phases_seen.push_back(phase);
  }
  plot.unclip();
  highlight(plot);
  if (!data.losses.empty()) draw_line(plot, data.loss_epochs, data.losses, {0.35, 0.35, 0.35}, false, 1.4);
  draw_line(plot, data.epochs, data.loss, {0.1, 0.1, 0.1}, true, data.losses.empty() ? 2.0 : 0.0);
  for (std::size_t s = 0; s < n && s < data.event_counts.size(); ++s) {
    if (data.event_counts[s] == 0) continue;
    const double ex = plot.px(static_cast<double>(data.epochs[s]));
    cairo_new_path(cr);
    cairo_move_to(cr, ex - 5, y + 3);
    cairo_line_to(cr, ex + 5, y + 3);
    cairo_line_to(cr, ex, y + 11);
    cairo_close_path(cr);
    canvas.set_color({0.45, 0.2, 0.6});
    cairo_fill(cr);
    canvas.text(ex, y + 24, std::to_string(data.event_counts[s]), {10.5, true, {0.45, 0.2, 0.6}}, Align::center,
                Baseline::middle);
  }
  nothing(x, y, w, panel_h, both, "no loss recorded");
  // Legend on the right of the title: what the marks and bands mean.
  double lx = x + w;
  const Font legend_font{11.5, false, kInk};
  std::vector<std::pair<std::string, Rgb>> keys;
  for (const auto& p : phases_seen) keys.emplace_back(p, phase_color(p));
  for (auto it = keys.rbegin(); it != keys.rend(); ++it) {
    lx -= canvas.text_width(it->first, legend_font) + 26;
    canvas.fill_rect(lx, y - 20, 14, 12, it->second, 0.35);
    canvas.text(lx + 18, y - 14, it->first, legend_font, Align::left, Baseline::middle);
  }
  if (total_events > 0) {
    const std::string label = "\u25bc learning events";
    lx -= canvas.text_width(label, legend_font) + 18;
    canvas.text(lx, y - 14, label, {11.5, false, {0.45, 0.2, 0.6}}, Align::left, Baseline::middle);
  }
  canvas.finish();
}

}  // namespace neuronmap::report
