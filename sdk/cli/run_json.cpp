// The run and snapshot objects of `inspect --json` (one schema for inspect, --follow and serve's API).
#include "cli/run_json.hpp"

#include <vector>

#include "report/counters_json.hpp"

namespace neuronmap::cli {
namespace {

using detail::JsonWriter;

void write_groups(JsonWriter& w, const std::vector<GroupSummary>& groups) {
  w.begin_array();
  for (const auto& g : groups) {
    w.begin_object();
    w.field("group_id", g.group_id).field("size", g.size).field("cohesion", g.cohesion_score);
    w.field("min_member_correlation", g.min_member_correlation).field("loose", g.loose);
    w.end_object();
  }
  w.end_array();
}

void write_event(JsonWriter& w, const Event& e) {
  w.begin_object();
  w.field("epoch", e.epoch).field("layer", e.layer).field("kind", e.kind);
  w.key("lineages").array(e.lineages);
  w.field("strength", e.strength).field("skill_category", e.skill_category).field("loss_change", e.loss_change);
  w.end_object();
}

}  // namespace

void write_run_fields(JsonWriter& w, const std::string& path, const RunInfo& info) {
  w.field("file", path).field("format_version", info.format_version);
  w.field("library_version", info.library_version).field("torch_version", info.torch_version);
  w.field("device", info.device).field("created", info.created).field("options_json", info.options_json);
  w.key("tag_names").array(info.tag_names);
  w.key("layers").begin_array();
  for (const auto& l : info.layers) {
    w.begin_object();
    w.field("name", l.name).field("module_type", l.module_type).field("reduction", l.reduction);
    w.end_object();
  }
  w.end_array();
}

void write_snapshot_object(JsonWriter& w, std::int64_t index, const SnapshotSummary& s, const Snapshot& header) {
  w.begin_object();
  w.field("index", index).field("epoch", s.epoch).field("loss", s.loss).field("timestamp", s.timestamp);
  w.field("phase", header.phase).field("n_events", header.events.size());
  w.key("events").begin_array();
  for (const auto& e : header.events) write_event(w, e);
  w.end_array();
  w.key("layers").begin_array();
  for (const auto& l : s.layers) {
    w.begin_object();
    w.field("name", l.name).field("n_neurons", l.n_neurons).field("samples", l.samples).field("groups", l.groups);
    w.field("loose_groups", l.loose_groups()).field("mean_cohesion", l.mean_cohesion).field("dead", l.dead);
    w.field("dropped_batches", l.counters.dropped_batches).field("reference_rows", l.reference_rows);
    w.key("counters");
    report::write_counters(w, l.counters);
    w.key("groups_detail");
    write_groups(w, l.group_summaries);
    w.end_object();
  }
  w.end_array();
  w.end_object();
}

}  // namespace neuronmap::cli
