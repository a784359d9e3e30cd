// The dashboard's data (compact JSON, safe inside <script>) and the HTML file around it.
#include "report/dashboard.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "neuronmap/errors.hpp"
#include "report/colormap.hpp"
#include "report/seed_charts.hpp"

namespace neuronmap::report {
namespace {

/// Group member lists longer than this are cut in the embedded data (the size stays exact).
constexpr std::size_t kMaxMembersShown = 256;
/// Learning events embedded; with more, the strongest are kept.
constexpr std::size_t kMaxEventsShown = 3000;
/// Points per group in the per-sample activation lines; longer patterns show every k-th sample.
constexpr std::size_t kMaxPatternPoints = 400;
/// The activation view: at most this many rows and columns of block means.
constexpr std::int64_t kMaxActivationRows = 120;
constexpr std::int64_t kMaxActivationColumns = 160;
/// Sample points in the sample scatter; more rows show every k-th one.
constexpr std::size_t kMaxSamplePoints = 1500;
/// Scatter points per layer; larger layers show every k-th neuron.
constexpr std::size_t kMaxScatterPoints = 6000;

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

/// "</script" inside the inlined library would end its <script> element early.
std::string script_safe(std::string js) {
  for (std::size_t at = 0; (at = js.find("</", at)) != std::string::npos; at += 3) {
    std::string tail = js.substr(at + 2, 6);
    std::transform(tail.begin(), tail.end(), tail.begin(), [](unsigned char c) { return std::tolower(c); });
    if (tail == "script") js.replace(at, 2, "<\\/");
  }
  return js;
}

/// The template with each placeholder replaced once, in one pass (values are never searched).
std::string fill(const std::string& text, std::vector<std::pair<std::string, std::string>> values) {
  std::vector<std::pair<std::size_t, std::size_t>> at;  // position in text, index in values
  for (std::size_t k = 0; k < values.size(); ++k) {
    const auto pos = text.find(values[k].first);
    if (pos == std::string::npos) throw Error("report: the dashboard template lacks " + values[k].first);
    at.emplace_back(pos, k);
  }
  std::sort(at.begin(), at.end());
  std::string out;
  std::size_t from = 0;
  for (const auto& [pos, k] : at) {
    out.append(text, from, pos - from);
    out += values[k].second;
    from = pos + values[k].first.size();
  }
  out.append(text, from, std::string::npos);
  return out;
}

/// The original tool's two views from the sample rows: activations (rows x neurons in group order, as
/// block means) and the samples in the PCA of activations with their most active group.
void write_sample_views(JsonWriter& w, const LayerSnapshot& layer, const GroupOrder& order, std::uint64_t seed) {
  const SampleRows rows = sample_rows(layer);
  if (rows.rows == 0) {
    w.key("sample_views").null();
    return;
  }
  w.key("sample_views").begin_object();
  w.field("rows", rows.rows);
  const std::int64_t cells_y = std::min<std::int64_t>(rows.rows, kMaxActivationRows);
  const std::int64_t cells_x = std::min<std::int64_t>(rows.cols, kMaxActivationColumns);
  std::vector<double> cells(static_cast<std::size_t>(cells_x * cells_y), 0.0), counts(cells.size(), 0.0);
  for (std::int64_t r = 0; r < rows.rows; ++r)
    for (std::int64_t p = 0; p < rows.cols; ++p) {
      const float v = rows.data[r * rows.cols + order.order[static_cast<std::size_t>(p)]];
      if (!std::isfinite(v)) continue;
      const auto k = static_cast<std::size_t>((r * cells_y / rows.rows) * cells_x + p * cells_x / rows.cols);
      cells[k] += v;
      counts[k] += 1;
    }
  std::vector<double> finite;
  for (std::size_t k = 0; k < cells.size(); ++k) {
    cells[k] = counts[k] > 0 ? cells[k] / counts[k] : std::nan("");
    if (std::isfinite(cells[k])) finite.push_back(cells[k]);
  }
  std::sort(finite.begin(), finite.end());
  const auto quantile = [&finite](double q) {
    return finite.empty() ? 0.0 : finite[static_cast<std::size_t>(q * static_cast<double>(finite.size() - 1))];
  };
  w.key("activations").begin_object();
  w.field("cells_y", cells_y).field("cells_x", cells_x).field("lo", quantile(0.01)).field("hi", quantile(0.99));
  w.key("column_labels").begin_array();  // the group of each column's first neuron
  for (std::int64_t c = 0; c < cells_x; ++c) w.value(order.label[static_cast<std::size_t>(c * rows.cols / cells_x)]);
  w.end_array();
  w.key("values").begin_array();
  for (double v : cells) w.rounded(v, 4);
  w.end_array();
  w.end_object();

  const Pca pca = principal_components(rows.data, rows.rows, rows.cols, 2, seed);
  const auto best = most_active_group(group_means(rows, layer.groups), rows.rows, static_cast<std::int64_t>(layer.groups.size()));
  const std::size_t stride = (static_cast<std::size_t>(rows.rows) + kMaxSamplePoints - 1) / kMaxSamplePoints;
  w.key("pca").begin_object();
  w.key("explained").array(pca.explained);
  for (std::size_t c = 0; c < 2; ++c) {
    w.key(c == 0 ? "x" : "y").begin_array();
    for (std::int64_t r = 0; r < rows.rows; r += static_cast<std::int64_t>(stride))
      w.rounded(c < pca.scores.size() ? pca.scores[c][static_cast<std::size_t>(r)] : 0.0, 4);
    w.end_array();
  }
  w.key("group").begin_array();
  for (std::int64_t r = 0; r < rows.rows; r += static_cast<std::int64_t>(stride)) {
    const int g = best[static_cast<std::size_t>(r)];
    w.value(g < 0 ? -1 : layer.groups[static_cast<std::size_t>(g)].group_id);
  }
  w.end_array();
  w.field("stride", static_cast<std::int64_t>(stride));
  w.end_object();
  w.end_object();
}

}  // namespace

void write_dashboard_colors(JsonWriter& w) {
  w.key("colors").begin_object();
  w.key("coolwarm").begin_array();
  for (int k = 0; k <= 16; ++k) w.value(cool_warm(k / 16.0).hex());
  w.end_array();
  w.key("groups").begin_array();
  for (int id = 0; id < 64; ++id) w.value(group_color(id).hex());
  w.end_array();
  w.field("ungrouped", group_color(-1).hex());
  w.key("viridis").begin_array();
  for (int k = 0; k <= 10; ++k) w.value(viridis(k / 10.0).hex());
  w.end_array();
  w.key("series").begin_array();
  for (int i = 0; i < 10; ++i) w.value(series_color(i).hex());
  w.end_array();
  w.end_object();
}

void write_dashboard_timeline(JsonWriter& w, const TimelineData& t) {
  w.key("timeline").begin_object();
  w.key("epochs").array(t.epochs);
  w.key("loss").array(t.loss);
  w.key("layers").array(t.layers);
  for (const auto& [key, values] : {std::pair{"groups", &t.groups}, std::pair{"cohesion", &t.cohesion},
                                    std::pair{"dead_rate", &t.dead_rate}, std::pair{"cka", &t.cka}}) {
    w.key(key).begin_array();
    for (const auto& v : *values) {
      w.begin_array();
      for (double d : v) w.rounded(d, 5);
      w.end_array();
    }
    w.end_array();
  }
  w.key("phases").array(t.phases);
  w.key("event_counts").array(t.event_counts);
  w.key("loss_epochs").array(t.loss_epochs);
  w.key("losses").begin_array();
  for (double d : t.losses) w.rounded(d, 6);
  w.end_array();
  w.key("phase_colors").begin_object();
  for (const char* phase : {"rapid", "refinement", "plateau", "unstable", "unknown"})
    w.field(phase, phase_color(phase).hex());
  w.end_object();
  w.end_object();
}

void write_dashboard_events(JsonWriter& w, const std::vector<Event>& events) {
  std::vector<const Event*> kept;
  for (const auto& e : events) kept.push_back(&e);
  if (kept.size() > kMaxEventsShown) {
    std::stable_sort(kept.begin(), kept.end(), [](const Event* a, const Event* b) { return a->strength > b->strength; });
    kept.resize(kMaxEventsShown);
    std::stable_sort(kept.begin(), kept.end(), [](const Event* a, const Event* b) { return a->epoch < b->epoch; });
  }
  w.field("events_total", static_cast<std::int64_t>(events.size()));
  w.key("events").begin_array();
  for (const Event* e : kept) {
    w.begin_object();
    w.field("epoch", e->epoch).field("layer", e->layer).field("kind", e->kind);
    w.key("lineages").array(e->lineages);
    w.field("strength", e->strength).field("skill", e->skill_category).field("loss_change", e->loss_change);
    w.end_object();
  }
  w.end_array();
}

void write_dashboard_layer(JsonWriter& w, const LayerSnapshot& layer, const GroupOrder& order,
                           const std::optional<Embedding>& embedding, std::int64_t max_cells, std::uint64_t seed) {
  w.begin_object();
  w.field("name", layer.name).field("n", layer.n_neurons).field("samples", layer.samples);
  w.field("dead", layer.dead_count()).field("mean_cohesion", layer.mean_cohesion());
  w.field("cka_previous", layer.cka_previous);
  if (layer.mean_abs.empty()) w.key("dormant_rate").null();
  else w.field("dormant_rate", layer.dormant_rate);
  std::int64_t grouped = 0;
  for (auto g : order.label) grouped += g >= 0;
  w.field("grouped", grouped);
  w.key("order").array(order.order);
  w.key("labels").array(order.label);
  w.key("blocks").begin_array();
  for (const auto& b : order.blocks)
    w.begin_array().value(b.group_id).value(b.begin).value(b.end).end_array();
  w.end_array();

  const ReducedMatrix m = reduce_matrix(layer, order, max_cells);
  w.field("cells", m.cells);
  if (m.cells > 0) {
    w.key("edges").array(m.edges);
    w.key("matrix").rounded_array(m.values, 3);
  } else {
    w.key("edges").null();
    w.key("matrix").null();
  }

  w.key("groups").begin_array();
  for (const auto& g : layer.groups) {
    w.begin_object();
    w.field("id", g.group_id).field("size", static_cast<std::int64_t>(g.group_size()));
    w.field("cohesion", g.cohesion_score).field("min_member_correlation", g.min_member_correlation);
    w.field("loose", g.loose).field("mean_activation", g.mean_activation);
    w.field("phase", g.learning_phase).field("skill", g.skill_category);
    w.field("lineage", g.lineage_id).field("importance", g.importance);
    w.field("selectivity", g.selectivity).field("loss_correlation", g.loss_correlation);
    w.key("members").begin_array();
    for (std::size_t i = 0; i < g.neuron_indices.size() && i < kMaxMembersShown; ++i) w.value(g.neuron_indices[i]);
    w.end_array();
    // The group's mean activation per sample row (the original tool's activation lines), every k-th row.
    const std::size_t stride = (g.activation_pattern.size() + kMaxPatternPoints - 1) / kMaxPatternPoints;
    w.field("pattern_stride", static_cast<std::int64_t>(std::max<std::size_t>(stride, 1)));
    w.key("pattern").begin_array();
    for (std::size_t i = 0; i < g.activation_pattern.size(); i += std::max<std::size_t>(stride, 1))
      w.rounded(g.activation_pattern[i], 4);
    w.end_array();
    w.end_object();
  }
  w.end_array();

  write_sample_views(w, layer, order, seed);
  // Attention layers: per head what the heads panel shows over the snapshots (docs/HEADS.md).
  w.key("heads").begin_array();
  for (const auto& h : layer.heads) {
    w.begin_object();
    w.field("role", h.role).field("entropy", h.entropy_mean).field("previous", h.previous_token());
    w.field("concentration", h.concentration).field("uniform", h.uniform).field("collapsed", h.collapsed);
    w.end_object();
  }
  w.end_array();

  if (!embedding) {
    w.key("scatter").null();
  } else {
    const auto& e = *embedding;
    const std::size_t stride = (e.neurons.size() + kMaxScatterPoints - 1) / kMaxScatterPoints;
    // Round to a fraction of the data's spread: enough to place points, far smaller than full doubles.
    double spread = 0;
    for (std::size_t i = 0; i < e.x.size(); ++i) spread = std::max({spread, std::fabs(e.x[i]), std::fabs(e.y[i])});
    const int decimals = spread > 0 ? std::clamp(4 - static_cast<int>(std::floor(std::log10(spread))), 1, 12) : 3;
    w.key("scatter").begin_object();
    w.field("method", e.method).field("x_label", e.x_label).field("y_label", e.y_label);
    std::string note = e.note;
    if (stride > 1)
      note += (note.empty() ? "" : "; ") + std::string("every ") + std::to_string(stride) + "th neuron shown";
    w.field("note", note);
    w.key("neuron").begin_array();
    for (std::size_t i = 0; i < e.neurons.size(); i += stride) w.value(e.neurons[i]);
    w.end_array();
    w.key("x").begin_array();
    for (std::size_t i = 0; i < e.x.size(); i += stride) w.rounded(e.x[i], decimals);
    w.end_array();
    w.key("y").begin_array();
    for (std::size_t i = 0; i < e.y.size(); i += stride) w.rounded(e.y[i], decimals);
    w.end_array();
    w.end_object();
  }
  w.end_object();
}

std::string dashboard_html(const std::string& echarts_js, const std::string& title, const std::string& data_json) {
  return fill(kDashboardTemplate, {{"{{NEURONMAP_TITLE}}", html_escape(title)},
                                   {"{{NEURONMAP_DATA}}", data_json},
                                   {"/*{{NEURONMAP_ECHARTS}}*/", script_safe(echarts_js)}});
}

void write_dashboard(const std::string& path, const std::string& echarts_path, const std::string& title,
                     const std::string& data_json) {
  std::ifstream in(echarts_path, std::ios::binary);
  std::ostringstream echarts;
  echarts << in.rdbuf();
  if (!in || echarts.str().size() < 1000)
    throw Error("report: cannot read ECharts from '" + echarts_path + "' (set NEURONMAP_ECHARTS_JS to echarts.min.js)");
  const std::string html = dashboard_html(echarts.str(), title, data_json);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << html;
  out.close();
  if (!out) throw Error("report: cannot write '" + path + "'");
}

}  // namespace neuronmap::report
