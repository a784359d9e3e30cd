// The interactive dashboard: one offline HTML file with ECharts and the data inlined.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "detail/json_writer.hpp"
#include "neuronmap/snapshot.hpp"
#include "report/charts.hpp"
#include "report/embedding.hpp"
#include "report/layout.hpp"

namespace neuronmap::report {

using detail::JsonWriter;

/// Appends one layer of one snapshot to the dashboard data: its matrix reduced to at most
/// `max_cells` per side, the group order, groups and scatter coordinates, and the original tool's views of
/// its sample rows (activations by group, samples in PCA, seeded by `seed` for large layers).
void write_dashboard_layer(JsonWriter& w, const LayerSnapshot& layer, const GroupOrder& order,
                           const std::optional<Embedding>& embedding, std::int64_t max_cells, std::uint64_t seed);

/// The colours the pictures use, for the dashboard to match them.
void write_dashboard_colors(JsonWriter& w);
/// The per-snapshot series of the timelines and the loss of every epoch.
void write_dashboard_timeline(JsonWriter& w, const TimelineData& timeline);
/// The learning events (at most a few thousand, strongest first when there are more).
void write_dashboard_events(JsonWriter& w, const std::vector<Event>& events);

/// Fills the HTML template with ECharts (read from `echarts_path`) and `data_json`. Throws Error.
void write_dashboard(const std::string& path, const std::string& echarts_path, const std::string& title,
                     const std::string& data_json);

/// The page itself: the template filled with the title, `echarts_js` (the library's text) and `data_json`.
std::string dashboard_html(const std::string& echarts_js, const std::string& title, const std::string& data_json);

/// The HTML template (generated from dashboard/dashboard.html at build time).
extern const char* const kDashboardTemplate;

}  // namespace neuronmap::report
