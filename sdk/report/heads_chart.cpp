// The head-statistics heatmap: see heads_chart.hpp.
#include "report/heads_chart.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include <fmt/format.h>

#include "report/canvas.hpp"
#include "report/colormap.hpp"

namespace neuronmap::report {

void draw_heads_heatmap(const std::string& path, ImageFormat format, const LayerSnapshot& layer, std::int64_t epoch) {
  std::vector<std::string> columns = {"entropy", "concentration", "collapsed"};
  for (int o = -HeadStatistics::kOffsets; o <= HeadStatistics::kOffsets; ++o) {
    columns.push_back(o == 0 ? "i" : fmt::format("i{:+d}", o));
  }
  const auto heads = static_cast<int>(layer.heads.size());
  const double cell = heads > 24 ? 18.0 : 34.0;
  const double left = 150, top = 122, right = 40, bottom = 70;
  const double width = cell * static_cast<double>(columns.size());
  Canvas canvas(path, format, static_cast<int>(left + width + right), static_cast<int>(top + cell * heads + bottom));
  const Rgb ink{0.13, 0.13, 0.13};
  const Rgb muted{0.45, 0.45, 0.45};
  canvas.text(20, 30, canvas.elide(fmt::format("Attention heads \u2014 layer {}, epoch {}", layer.name, epoch),
                                   left + width - 20, {18.0, true, ink}),
              {18.0, true, ink});
  canvas.text(20, 52, "values 0 (light) to 1 (dark); i\u22121 is the previous-token score; NaN grey",
              {12.0, false, muted});
  const Font label{11.0, false, ink};
  for (std::size_t c = 0; c < columns.size(); ++c) {
    canvas.text(left + (static_cast<double>(c) + 0.5) * cell, top - 8, columns[c], label, Align::left,
                Baseline::middle, -0.9);
  }
  for (int h = 0; h < heads; ++h) {
    const auto& s = layer.heads[static_cast<std::size_t>(h)];
    const double y = top + cell * h;
    std::string name = fmt::format("head {} {}", h, s.role);
    if (h < static_cast<int>(layer.labels.size()) && layer.labels[static_cast<std::size_t>(h)] >= 0) {
      name += fmt::format(" g{}", layer.labels[static_cast<std::size_t>(h)]);
    }
    canvas.text(left - 8, y + cell / 2, canvas.elide(name, left - 16, label), label, Align::right, Baseline::middle);
    std::vector<double> values = {s.entropy_mean, s.concentration, s.collapsed_fraction};
    values.insert(values.end(), s.offset_weight.begin(), s.offset_weight.end());
    for (std::size_t c = 0; c < values.size() && c < columns.size(); ++c) {
      const double v = values[c];
      const Rgb color = std::isfinite(v) ? cool_warm(0.5 + 0.5 * std::clamp(v, 0.0, 1.0)) : nan_color();
      canvas.fill_rect(left + cell * static_cast<double>(c), y, cell - 1, cell - 1, color);
      if (cell >= 30 && std::isfinite(v)) {
        canvas.text(left + cell * (static_cast<double>(c) + 0.5), y + cell / 2, fmt::format("{:.2f}", v),
                    {9.5, false, v > 0.6 ? Rgb{1, 1, 1} : ink}, Align::center, Baseline::middle);
      }
    }
  }
  canvas.text(left, top + cell * heads + 24,
              fmt::format("{} heads \u00b7 {} queries per head", heads, layer.heads.front().queries), {12.0, false, muted});
  canvas.finish();
}

}  // namespace neuronmap::report
