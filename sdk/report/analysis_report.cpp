// The JSON and text reports: the original tool's structure (run metadata, layer analysis, learning
// patterns), filled with what a run file holds and saying plainly what it does not.
#include "report/analysis_report.hpp"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <utility>

#include <fmt/format.h>

#include "detail/json_writer.hpp"
#include "report/counters_json.hpp"
#include "report/heads_section.hpp"

namespace neuronmap::report {
namespace {

using detail::JsonWriter;

constexpr const char* kEventsNote =
    "This run file stores no learning events: NeuronMap records groups, cohesion and dead neurons per "
    "snapshot instead (the per-snapshot totals). The event sections are kept, empty, so that readers of "
    "the original report find them.";

/// Totals of one snapshot summary over its (reported) layers.
struct Totals {
  std::int64_t groups = 0, loose = 0, neurons = 0, dead = 0, dropped = 0, samples = 0;
  double cohesion = NAN;  ///< mean over all groups of all layers (NaN without groups)
};

Totals totals(const SnapshotSummary& s) {
  Totals t;
  double weighted = 0;
  for (const auto& l : s.layers) {
    t.groups += l.groups;
    t.loose += l.loose_groups();
    t.neurons += l.n_neurons;
    t.dead += l.dead;
    t.dropped += l.counters.dropped_batches;
    t.samples += l.samples;
    weighted += l.mean_cohesion * static_cast<double>(l.groups);
  }
  if (t.groups > 0) t.cohesion = weighted / static_cast<double>(t.groups);
  return t;
}

const LayerInfo* find_info(const RunInfo& info, const std::string& name) {
  for (const auto& l : info.layers)
    if (l.name == name) return &l;
  return nullptr;
}

std::map<std::string, std::int64_t> count_labels(const Snapshot& s, bool skill) {
  std::map<std::string, std::int64_t> counts;
  for (const auto& l : s.layers)
    for (const auto& g : l.groups) {
      const auto& v = skill ? g.skill_category : g.learning_phase;
      if (!v.empty()) ++counts[v];
    }
  return counts;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  if (shape.empty()) return "-";
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string number(double v, const char* spec = "{:.3f}") {
  return std::isfinite(v) ? fmt::format(fmt::runtime(spec), v) : "n/a";
}

/// Control characters from a damaged file must not reach a terminal showing the text report.
std::string printable(const std::string& s) {
  std::string out = s;
  for (auto& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return out;
}

std::string join_indices(const std::vector<std::int32_t>& v, std::size_t limit) {
  std::string s;
  for (std::size_t i = 0; i < v.size() && i < limit; ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  if (v.size() > limit) s += fmt::format(", ... ({} more)", v.size() - limit);
  return s;
}

}  // namespace

std::string iso_time(double seconds) {
  if (!std::isfinite(seconds)) return "";
  const auto whole = static_cast<std::time_t>(std::floor(seconds));
  std::tm tm{};
  if (!gmtime_r(&whole, &tm)) return "";
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S", &tm);
  const auto millis = static_cast<int>(std::floor((seconds - std::floor(seconds)) * 1000.0));
  return fmt::format("{}.{:03d}Z", buffer, std::clamp(millis, 0, 999));
}

std::string render_json_report(const AnalysisInput& in) {
  const RunInfo& info = *in.info;
  const Snapshot& snap = *in.snapshot;
  JsonWriter w;
  w.begin_object();

  w.key("pytorch_analysis").begin_object();
  w.field("device", info.device).field("torch_version", info.torch_version);
  w.field("total_layers", static_cast<std::int64_t>(snap.layers.size()));
  w.field("analysis_timestamp", iso_time(snap.timestamp));
  w.field("report_generated", iso_time(static_cast<double>(std::time(nullptr))));
  w.field("library", "NeuronMap").field("library_version", info.library_version);
  w.field("run_file", in.run_path).field("format_version", info.format_version);
  w.field("created", info.created).field("snapshots_in_file", in.snapshots_in_file);
  w.field("snapshot_index", in.snapshot_index).field("epoch", snap.epoch).field("loss", snap.loss);
  w.field("options_json", info.options_json);
  w.key("tag_names").array(info.tag_names);
  w.field("phase", snap.phase);
  w.key("layers").begin_array();
  for (const auto& l : snap.layers) {
    const auto* li = find_info(info, l.name);
    w.begin_object().field("name", l.name);
    w.field("module_type", li ? li->module_type : "").field("reduction", li ? li->reduction : "");
    w.end_object();
  }
  w.end_array();
  w.end_object();

  w.key("layer_analysis").begin_object();
  std::map<std::string, int> seen;
  for (const auto& l : snap.layers) {
    // Layer names are unique in a snapshot; should a damaged file repeat one, keep both entries.
    const int repeat = seen[l.name]++;
    w.key(repeat == 0 ? l.name : fmt::format("{} ({})", l.name, repeat + 1)).begin_object();
    w.field("groups_found", static_cast<std::int64_t>(l.groups.size()));
    w.field("loose_groups", static_cast<std::int64_t>(
                                std::count_if(l.groups.begin(), l.groups.end(), [](const Group& g) { return g.loose; })));
    w.key("activation_shape").begin_array().value(l.samples).value(l.n_neurons).end_array();
    w.key("output_shape").array(l.output_shape);
    const auto* li = find_info(info, l.name);
    w.field("module_type", li ? li->module_type : "").field("reduction", li ? li->reduction : "");
    w.field("n_neurons", l.n_neurons).field("samples", l.samples);
    w.field("dead_neurons", l.dead_count());
    w.field("dead_rate", l.n_neurons > 0 ? static_cast<double>(l.dead_count()) / static_cast<double>(l.n_neurons) : NAN);
    w.field("mean_cohesion", l.groups.empty() ? NAN : l.mean_cohesion());
    std::int64_t grouped = 0;
    for (auto label : l.labels) grouped += label >= 0;
    w.field("grouped_neurons", grouped);
    w.field("cka_previous", l.cka_previous);
    if (l.mean_abs.empty()) w.key("dormant_rate").null();
    else w.field("dormant_rate", l.dormant_rate);
    w.field("gradient_samples", l.gradient_samples);
    w.field("reservoir_samples", static_cast<std::int64_t>(l.reservoir_ids.size()));
    const auto it = in.layer_files.find(l.name);
    const LayerFiles files = it == in.layer_files.end() ? LayerFiles{} : it->second;
    w.field("correlation_stored", files.correlation_stored);
    w.key("counters");
    write_counters(w, l.counters);
    w.key("groups_detail").begin_array();
    for (const auto& g : l.groups) {
      w.begin_object();
      w.field("group_id", g.group_id).field("size", static_cast<std::int64_t>(g.group_size()));
      w.key("neuron_indices").array(g.neuron_indices);
      w.field("cohesion", g.cohesion_score).field("min_member_correlation", g.min_member_correlation);
      w.field("loose", g.loose).field("mean_activation", g.mean_activation);
      w.field("activation_pattern_length", static_cast<std::int64_t>(g.activation_pattern.size()));
      w.field("lineage_id", g.lineage_id).field("importance", g.importance);
      w.field("selectivity", g.selectivity).field("loss_correlation", g.loss_correlation);
      if (!g.skill_category.empty()) w.field("skill_category", g.skill_category);
      if (!g.learning_phase.empty()) w.field("learning_phase", g.learning_phase);
      w.end_object();
    }
    w.end_array();
    w.key("files").begin_object();
    for (const auto& [key, file] : {std::pair{"heatmap", &files.heatmap}, std::pair{"scatter", &files.scatter},
                                    std::pair{"correlation", &files.correlation},
                                    std::pair{"neuron_scatter", &files.neuron_scatter},
                                    std::pair{"network", &files.network}}) {
      if (file->empty()) w.key(key).null();
      else w.field(key, *file);
    }
    if (!files.scatter_method.empty()) w.field("scatter_method", files.scatter_method);
    if (!files.why.empty()) w.field("note", files.why);
    w.end_object();
    w.end_object();
  }
  w.end_object();

  const RunLearning& learning = *in.learning;
  const auto& events = learning.events;
  w.key("learning_patterns").begin_object();
  w.field("source", "the run file: learning events, phases and CKA where it holds them, and per-snapshot totals");
  w.field("total_events", static_cast<std::int64_t>(events.size()));
  std::map<std::string, std::int64_t> per_kind, skills;
  double strength = 0;
  for (const auto& e : events) {
    ++per_kind[e.kind];
    if (!e.skill_category.empty()) ++skills[e.skill_category];
    strength += e.strength;
  }
  w.key("events_per_kind").begin_object();
  for (const auto& [kind, count] : per_kind) w.field(kind, count);
  w.end_object();
  w.key("skill_distribution").begin_object();
  for (const auto& [skill, count] : skills) w.field(skill, count);
  w.end_object();
  if (events.empty()) w.key("average_strength").null();
  else w.field("average_strength", strength / static_cast<double>(events.size()));
  if (events.empty()) w.field("events_note", kEventsNote);
  w.key("events").begin_array();
  for (const auto& e : events) {
    w.begin_object();
    w.field("epoch", e.epoch).field("layer", e.layer).field("kind", e.kind);
    w.key("lineages").array(e.lineages);
    w.field("strength", e.strength).field("skill_category", e.skill_category).field("loss_change", e.loss_change);
    w.end_object();
  }
  w.end_array();
  for (const bool skill : {true, false}) {
    w.key(skill ? "group_skill_distribution" : "learning_phase_distribution").begin_object();
    for (const auto& [name, count] : count_labels(snap, skill)) w.field(name, count);
    w.end_object();
  }
  w.key("loss_curve").begin_object();
  w.key("epochs").array(learning.loss_epochs);
  w.key("loss").array(learning.losses);
  w.end_object();
  const auto& summaries = *in.summaries;
  w.key("timeline").begin_array();
  for (std::size_t i = 0; i < summaries.size(); ++i) {
    const auto& s = summaries[i];
    const SnapshotLearning* learned = i < learning.snapshots.size() ? &learning.snapshots[i] : nullptr;
    const Totals t = totals(s);
    w.begin_object();
    w.field("index", static_cast<std::int64_t>(i)).field("epoch", s.epoch).field("loss", s.loss);
    w.field("timestamp", iso_time(s.timestamp));
    w.field("phase", learned ? learned->phase : std::string());
    w.field("events", learned ? learned->events : std::int64_t{0});
    w.field("total_groups", t.groups).field("loose_groups", t.loose).field("mean_cohesion", t.cohesion);
    w.field("neurons", t.neurons).field("dead_neurons", t.dead);
    w.field("dead_rate", t.neurons > 0 ? static_cast<double>(t.dead) / static_cast<double>(t.neurons) : NAN);
    w.field("dropped_batches", t.dropped);
    w.key("layers").begin_object();
    for (const auto& l : s.layers) {
      w.key(l.name).begin_object();
      w.field("groups", l.groups).field("loose_groups", l.loose_groups());
      w.field("mean_cohesion", l.groups > 0 ? l.mean_cohesion : NAN);
      w.field("dead", l.dead).field("n_neurons", l.n_neurons).field("samples", l.samples);
      const LayerLearning* ll = nullptr;
      if (learned)
        if (auto it = learned->layers.find(l.name); it != learned->layers.end()) ll = &it->second;
      w.field("cka_previous", ll ? ll->cka_previous : NAN).field("dormant_rate", ll ? ll->dormant_rate : NAN);
      w.end_object();
    }
    w.end_object();
    w.end_object();
  }
  w.end_array();
  w.key("trend").begin_object();
  if (!summaries.empty()) {
    const Totals first = totals(summaries.front()), last = totals(summaries.back());
    w.field("first_epoch", summaries.front().epoch).field("last_epoch", summaries.back().epoch);
    w.field("total_groups_first", first.groups).field("total_groups_last", last.groups);
    w.field("mean_cohesion_first", first.cohesion).field("mean_cohesion_last", last.cohesion);
    w.field("dead_neurons_first", first.dead).field("dead_neurons_last", last.dead);
    w.field("loss_first", summaries.front().loss).field("loss_last", summaries.back().loss);
  }
  w.end_object();
  w.end_object();

  write_heads_json(w, snap);

  w.key("outputs").begin_object();
  w.key("files").array(in.files);
  w.key("dashboard").begin_object();
  w.field("written", in.dashboard_written);
  if (!in.dashboard_note.empty()) w.field("note", in.dashboard_note);
  w.end_object();
  w.key("notes").array(in.notes);
  w.end_object();

  w.end_object();
  return w.take() + "\n";
}

std::string render_text_report(const AnalysisInput& in) {
  const RunInfo& info = *in.info;
  const Snapshot& snap = *in.snapshot;
  std::string out;
  const auto heading = [&out](const std::string& title, char underline) {
    out += title + "\n" + std::string(title.size(), underline) + "\n";
  };
  heading("PyTorch Neuron Group Analysis Report (NeuronMap)", '=');
  out += fmt::format("Run file:          {}\n", printable(in.run_path));
  out += fmt::format("Device:            {}\n", info.device.empty() ? "-" : printable(info.device));
  out += fmt::format("Torch version:     {}\n", info.torch_version.empty() ? "-" : printable(info.torch_version));
  out += fmt::format("NeuronMap version: {} (file format {})\n", printable(info.library_version), info.format_version);
  out += fmt::format("Run created:       {}\n", info.created.empty() ? "-" : printable(info.created));
  out += fmt::format("Snapshots in file: {}\n", in.snapshots_in_file);
  out += fmt::format("Reported snapshot: #{} at epoch {} (loss {}, taken {})\n", in.snapshot_index, snap.epoch,
                     number(snap.loss, "{:.6g}"), iso_time(snap.timestamp));
  if (!snap.phase.empty()) out += fmt::format("Learning phase:    {}\n", printable(snap.phase));
  out += fmt::format("Total layers:      {}\n\n", snap.layers.size());

  heading(fmt::format("Layer analysis (epoch {})", snap.epoch), '-');
  for (const auto& l : snap.layers) {
    const auto* li = find_info(info, l.name);
    out += "\n" + printable(l.name);
    if (li && !li->module_type.empty()) out += " (" + printable(li->module_type) + ")";
    out += "\n";
    if (li && !li->reduction.empty()) out += fmt::format("  reduction:        {}\n", printable(li->reduction));
    const auto loose = std::count_if(l.groups.begin(), l.groups.end(), [](const Group& g) { return g.loose; });
    out += fmt::format("  groups found:     {}{}\n", l.groups.size(),
                       loose > 0 ? fmt::format(" ({} loose)", loose) : std::string());
    out += fmt::format("  activation shape: {} samples x {} neurons (last output shape {})\n", l.samples, l.n_neurons,
                       shape_text(l.output_shape));
    out += fmt::format("  dead neurons:     {} of {}\n", l.dead_count(), l.n_neurons);
    out += fmt::format("  mean cohesion:    {}\n", l.groups.empty() ? "n/a (no groups)" : number(l.mean_cohesion()));
    if (!l.mean_abs.empty()) out += fmt::format("  dormant neurons:  {:.1f}%\n", 100.0 * l.dormant_rate);
    if (std::isfinite(l.cka_previous)) out += fmt::format("  CKA to previous:  {:.3f}\n", l.cka_previous);
    out += fmt::format("  batches:          {} captured, {} dropped, {} skipped{}; {} rows ({} non-finite)\n",
                       l.counters.captured_batches, l.counters.dropped_batches, l.counters.skipped_batches,
                       l.counters.budget_skipped_batches > 0
                           ? fmt::format(", {} left out for the overhead budget", l.counters.budget_skipped_batches)
                           : std::string(),
                       l.counters.rows, l.counters.nonfinite_rows);
    for (const auto& g : l.groups) {
      out += fmt::format("  Group {}: size {}, cohesion {}, min member r {}{}, mean activation {}", g.group_id,
                         g.group_size(), number(g.cohesion_score), number(g.min_member_correlation),
                         g.loose ? " (loose: cohesion below the grouping threshold)" : "",
                         number(g.mean_activation, "{:.4g}"));
      if (!g.skill_category.empty()) out += ", skill " + printable(g.skill_category);
      if (!g.learning_phase.empty()) out += ", phase " + printable(g.learning_phase);
      if (g.lineage_id >= 0) out += fmt::format(", lineage {}", g.lineage_id);
      if (g.selectivity != 0) out += fmt::format(", selectivity {:.3f}", g.selectivity);
      if (g.importance != 0) out += fmt::format(", importance {:.4g}", g.importance);
      if (g.loss_correlation != 0) out += fmt::format(", loss r {:+.3f}", g.loss_correlation);
      out += "\n    neurons: " + join_indices(g.neuron_indices, 64) + "\n";
    }
    const auto it = in.layer_files.find(l.name);
    if (it != in.layer_files.end()) {
      const LayerFiles& f = it->second;
      if (!f.heatmap.empty()) out += "  activation heatmap: " + f.heatmap + "\n";
      if (!f.scatter.empty()) out += "  sample scatter: " + f.scatter + " (PCA of activations)\n";
      if (!f.correlation.empty()) out += "  correlation heatmap: " + f.correlation + "\n";
      if (!f.neuron_scatter.empty()) out += "  neuron scatter: " + f.neuron_scatter + " (" + f.scatter_method + ")\n";
      if (!f.network.empty()) out += "  network: " + f.network + "\n";
      if (!it->second.why.empty()) out += "  note: " + it->second.why + "\n";
    }
  }

  out += "\n";
  heading("Learning patterns", '-');
  const RunLearning& learning = *in.learning;
  out += "Per snapshot, over the reported layers:\n";
  out += fmt::format("  {:>5}  {:>8}  {:>12}  {:>11}  {:>7}  {:>6}  {:>9}  {:>10}  {:>6}\n", "#", "epoch", "loss",
                     "phase", "groups", "loose", "cohesion", "dead", "events");
  for (std::size_t i = 0; i < in.summaries->size(); ++i) {
    const auto& s = (*in.summaries)[i];
    const Totals t = totals(s);
    const SnapshotLearning* learned = i < learning.snapshots.size() ? &learning.snapshots[i] : nullptr;
    out += fmt::format("  {:>5}  {:>8}  {:>12}  {:>11}  {:>7}  {:>6}  {:>9}  {:>10}  {:>6}\n", i, s.epoch,
                       number(s.loss, "{:.6g}"), learned && !learned->phase.empty() ? printable(learned->phase) : "-",
                       t.groups, t.loose, number(t.cohesion), fmt::format("{}/{}", t.dead, t.neurons),
                       learned ? learned->events : 0);
  }
  const auto& events = learning.events;
  if (events.empty()) {
    out += "\nLearning events: none (total 0). " + std::string(kEventsNote) + "\n";
    out += "Average strength: n/a (no events)\n";
  } else {
    std::map<std::string, std::int64_t> per_kind, skills;
    double strength = 0;
    for (const auto& e : events) {
      ++per_kind[e.kind];
      if (!e.skill_category.empty()) ++skills[e.skill_category];
      strength += e.strength;
    }
    std::string kinds;
    for (const auto& [kind, count] : per_kind) kinds += (kinds.empty() ? "" : ", ") + printable(kind) + " " + std::to_string(count);
    out += fmt::format("\nLearning events: {} ({})\n", events.size(), kinds);
    out += fmt::format("Average strength: {:.3f}\n", strength / static_cast<double>(events.size()));
    std::string list;
    for (const auto& [skill, count] : skills) list += (list.empty() ? "" : ", ") + printable(skill) + " " + std::to_string(count);
    out += "Skill distribution (events): " + (list.empty() ? std::string("none recorded") : list) + "\n";
    // The strongest events, at most 25 of them, in time order.
    std::vector<const Event*> top;
    for (const auto& e : events) top.push_back(&e);
    std::stable_sort(top.begin(), top.end(), [](const Event* a, const Event* b) { return a->strength > b->strength; });
    if (top.size() > 25) top.resize(25);
    std::stable_sort(top.begin(), top.end(), [](const Event* a, const Event* b) { return a->epoch < b->epoch; });
    out += fmt::format("Strongest events ({} of {}):\n", top.size(), events.size());
    out += fmt::format("  {:>8}  {:<16}  {:<15}  {:>8}  {:<16}  {:>11}  {}\n", "epoch", "layer", "kind", "strength",
                       "skill", "loss change", "lineages");
    for (const Event* e : top) {
      std::string lineages;
      for (auto id : e->lineages) lineages += (lineages.empty() ? "" : ", ") + std::to_string(id);
      out += fmt::format("  {:>8}  {:<16}  {:<15}  {:>8.3f}  {:<16}  {:>11}  {}\n", e->epoch,
                         e->layer.empty() ? "(model)" : printable(e->layer), printable(e->kind), e->strength,
                         e->skill_category.empty() ? "-" : printable(e->skill_category),
                         number(e->loss_change, "{:+.4g}"), lineages);
    }
  }
  for (const bool skill : {true, false}) {
    const auto counts = count_labels(snap, skill);
    out += skill ? "Group skill categories (reported snapshot): " : "Group learning phases (reported snapshot): ";
    if (counts.empty()) out += "none recorded\n";
    else {
      std::string list;
      for (const auto& [name, count] : counts) list += (list.empty() ? "" : ", ") + printable(name) + " " + std::to_string(count);
      out += list + "\n";
    }
  }
  out += "\n";

  out += heads_text(snap);

  heading("Outputs", '-');
  for (const auto& f : in.files) out += "  " + f + "\n";
  out += in.dashboard_written ? "  (dashboard included)\n" : "  dashboard: not written. " + in.dashboard_note + "\n";
  for (const auto& n : in.notes) out += "  note: " + n + "\n";
  return out;
}

}  // namespace neuronmap::report
