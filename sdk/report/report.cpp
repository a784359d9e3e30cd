// write_report: picks the snapshots and layers, then writes the pictures, the timeline, the dashboard
// and the two reports. Each snapshot is read once; only what the reports need is kept in memory.
#include "report/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>

#include "neuronmap/errors.hpp"
#include "report/analysis_report.hpp"
#include "report/charts.hpp"
#include "report/dashboard.hpp"
#include "report/embedding.hpp"
#include "report/heads_chart.hpp"
#include "report/layout.hpp"
#include "report/progress.hpp"
#include "report/seed_charts.hpp"

namespace neuronmap::report {
namespace {

namespace fs = std::filesystem;

/// Snapshots whose groups and matrices the dashboard embeds; its timelines always cover all.
constexpr std::int64_t kMaxDashboardSnapshots = 24;
/// Matrix cells the dashboard embeds in all, shared out among snapshots and layers.
constexpr double kDashboardCellBudget = 1.5e6;

constexpr const char* kNeedsNpm =
    "the dashboard needs ECharts, which the build installs with npm (npm ci into the build directory); "
    "npm was missing or failed when NeuronMap was built. Install Node.js/npm and rebuild, or set "
    "NEURONMAP_ECHARTS_JS to an echarts.min.js file";

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : separator) + s;
  return out;
}

void write_text_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) throw Error("report: cannot write '" + path.string() + "'");
}

/// `count` indices spread evenly over [0, size), always with the first and the last.
std::vector<std::int64_t> evenly_spaced(std::int64_t size, std::int64_t count) {
  std::vector<std::int64_t> out;
  if (size <= count) {
    for (std::int64_t i = 0; i < size; ++i) out.push_back(i);
    return out;
  }
  for (std::int64_t k = 0; k < count; ++k) out.push_back(k * (size - 1) / (count - 1));
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

/// What one reported snapshot leaves for its reports once its pictures are drawn.
struct Reported {
  std::int64_t index = 0;
  Snapshot snapshot;  ///< reported layers only, correlation matrices dropped
  std::map<std::string, LayerFiles> layer_files;
  std::vector<std::string> files;
  std::vector<std::string> notes;
};

}  // namespace

std::string sanitize_file_part(const std::string& name) {
  std::string out;
  for (unsigned char c : name)
    out += (std::isalnum(c) && c < 0x80) || c == '_' || c == '-' ? static_cast<char>(c) : '_';
  return out.empty() ? "layer" : out;
}

std::string find_echarts() {
  std::error_code ec;
  // An explicit setting wins, also when it names nothing: that is how to build without a dashboard.
  if (const char* env = std::getenv("NEURONMAP_ECHARTS_JS"); env != nullptr)
    return fs::is_regular_file(env, ec) ? std::string(env) : std::string();
  std::vector<fs::path> candidates;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path() / "echarts.min.js");
    candidates.push_back(exe.parent_path() / ".." / "share" / "neuronmap" / "echarts.min.js");
  }
#ifdef NEURONMAP_ECHARTS_BUILD_PATH
  candidates.emplace_back(NEURONMAP_ECHARTS_BUILD_PATH);
#endif
  for (const auto& c : candidates)
    if (fs::is_regular_file(c, ec)) return c.lexically_normal().string();
  return {};
}

ReportResult write_report(const RunSource& run, const ReportOptions& opt) {
  const RunInfo& info = run.info();
  const std::int64_t size = run.size();
  const std::string run_name = opt.run_path.empty() ? std::string("the run file") : "'" + opt.run_path + "'";
  if (size == 0)
    throw Error("report: " + run_name + " holds no snapshots yet (training appends one every N epochs); try again later");
  if (opt.out_dir.empty()) throw Error("report: no output folder given (--out DIR)");
  std::error_code ec;
  fs::create_directories(opt.out_dir, ec);
  if (ec || !fs::is_directory(opt.out_dir))
    throw Error("report: cannot create the output folder '" + opt.out_dir + "'" + (ec ? ": " + ec.message() : ""));
  const fs::path out_dir(opt.out_dir);
  const std::string ext = opt.format == ImageFormat::svg ? ".svg" : ".png";

  // Layers: those the file lists, then any that only appear in snapshots; --layers picks among them.
  std::vector<SnapshotSummary> summaries;
  summaries.reserve(static_cast<std::size_t>(size));
  for (std::int64_t i = 0; i < size; ++i) summaries.push_back(run.summary(i));
  std::vector<std::string> known;
  const auto add_known = [&known](const std::string& name) {
    if (std::find(known.begin(), known.end(), name) == known.end()) known.push_back(name);
  };
  for (const auto& l : info.layers) add_known(l.name);
  for (const auto& s : summaries)
    for (const auto& l : s.layers) add_known(l.name);
  std::vector<std::string> selected;
  for (const auto& name : opt.layers)
    if (std::find(known.begin(), known.end(), name) == known.end())
      throw Error("report: no layer '" + name + "' in " + run_name + "; its layers are: " + join(known, ", "));
  for (const auto& name : known)
    if (opt.layers.empty() || std::find(opt.layers.begin(), opt.layers.end(), name) != opt.layers.end())
      selected.push_back(name);
  const std::set<std::string> selected_set(selected.begin(), selected.end());
  const auto keep_selected = [&selected_set](auto& layers) {
    layers.erase(std::remove_if(layers.begin(), layers.end(),
                                [&](const auto& l) { return selected_set.count(l.name) == 0; }),
                 layers.end());
  };
  for (auto& s : summaries) keep_selected(s.layers);

  // Snapshots: the latest, the one at --epoch, or all of them.
  std::vector<std::int64_t> pictured;
  if (opt.all) {
    for (std::int64_t i = 0; i < size; ++i) pictured.push_back(i);
  } else if (opt.epoch) {
    for (std::int64_t i = size - 1; i >= 0 && pictured.empty(); --i)
      if (summaries[static_cast<std::size_t>(i)].epoch == *opt.epoch) pictured.push_back(i);
    if (pictured.empty()) {
      std::vector<std::string> epochs;
      for (const auto& s : summaries) epochs.push_back(std::to_string(s.epoch));
      throw Error(fmt::format("report: {} has no snapshot at epoch {}; its snapshot epochs are: {} (or use --all)",
                              run_name, *opt.epoch, join(epochs, ", ")));
    }
  } else {
    pictured.push_back(size - 1);
  }
  std::map<std::int64_t, int> epoch_uses;
  for (const auto& s : summaries) ++epoch_uses[s.epoch];
  const auto suffix = [&](std::int64_t index) -> std::string {
    if (!opt.all) return "";
    const auto epoch = summaries[static_cast<std::size_t>(index)].epoch;
    return epoch_uses[epoch] > 1 ? fmt::format("_e{}_s{}", epoch, index) : fmt::format("_e{}", epoch);
  };
  // File-name stems: sanitised, and kept apart should two names sanitise alike ("a.b", "a_b").
  std::map<std::string, std::string> stem;
  std::set<std::string> used_stems;
  for (const auto& name : selected) {
    const std::string base = sanitize_file_part(name);
    std::string s = base;
    for (int k = 2; used_stems.count(s) != 0; ++k) s = base + "_" + std::to_string(k);
    used_stems.insert(s);
    stem[name] = s;
  }

  ReportResult result;
  std::vector<std::string> notes;
  std::string dashboard_note;
  std::string echarts;
  if (!opt.dashboard) {
    dashboard_note = "not asked for (--no-dashboard)";
  } else {
    echarts = find_echarts();
    if (echarts.empty()) {
      const char* env = std::getenv("NEURONMAP_ECHARTS_JS");
      dashboard_note = env ? fmt::format("NEURONMAP_ECHARTS_JS='{}' is not a file; {}", env, kNeedsNpm) : kNeedsNpm;
      notes.push_back("dashboard not written: " + dashboard_note);
    }
  }
  const bool dashboard = !echarts.empty();
  std::vector<std::int64_t> detailed;
  if (dashboard) {
    detailed = evenly_spaced(size, kMaxDashboardSnapshots);
    if (!opt.all)
      for (auto i : pictured)
        if (std::find(detailed.begin(), detailed.end(), i) == detailed.end()) detailed.push_back(i);
    std::sort(detailed.begin(), detailed.end());
  }
  const auto dashboard_cells = static_cast<std::int64_t>(std::clamp(
      std::sqrt(kDashboardCellBudget / static_cast<double>(std::max<std::size_t>(1, detailed.size() * selected.size()))),
      48.0, 160.0));

  // The timeline: counts from the summaries now, learning values (CKA, phases, events, the loss of
  // every epoch) from the full snapshots as they are read below.
  TimelineData timeline;
  timeline.layers = selected;
  const auto n_layers = selected.size();
  timeline.groups.assign(n_layers, {});
  timeline.cohesion.assign(n_layers, {});
  timeline.dead_rate.assign(n_layers, {});
  timeline.cka.assign(n_layers, std::vector<double>(static_cast<std::size_t>(size), NAN));
  for (const auto& s : summaries) {
    timeline.epochs.push_back(s.epoch);
    timeline.loss.push_back(s.loss);
    for (std::size_t l = 0; l < n_layers; ++l) {
      const LayerSummary* found = nullptr;
      for (const auto& ls : s.layers)
        if (ls.name == selected[l]) found = &ls;
      timeline.groups[l].push_back(found ? static_cast<double>(found->groups) : NAN);
      timeline.cohesion[l].push_back(found && found->groups > 0 ? found->mean_cohesion : NAN);
      timeline.dead_rate[l].push_back(found && found->n_neurons > 0
                                          ? static_cast<double>(found->dead) / static_cast<double>(found->n_neurons)
                                          : NAN);
    }
  }
  if (!opt.all) timeline.highlight_epoch = summaries[static_cast<std::size_t>(pictured.back())].epoch;
  RunLearning learning;
  learning.snapshots.resize(static_cast<std::size_t>(size));

  // Every snapshot is read once: all of them for the learning values, the pictured and the
  // dashboard's ones also for pictures and embedded data.
  Progress progress(opt.progress, static_cast<int>(size + (pictured.size() + detailed.size()) * n_layers + 2));
  JsonWriter details(detail::JsonLayout::compact, detail::JsonEscape::html);
  details.begin_array();
  std::vector<Reported> reported;
  for (std::int64_t index = 0; index < size; ++index) {
    const bool pictures = std::binary_search(pictured.begin(), pictured.end(), index);
    const bool detail = std::binary_search(detailed.begin(), detailed.end(), index);
    progress.step(fmt::format("reading snapshot {} of {}", index + 1, size));
    Snapshot snap = run.snapshot(index);
    keep_selected(snap.layers);
    auto& learned = learning.snapshots[static_cast<std::size_t>(index)];
    learned.phase = snap.phase;
    for (const auto& e : snap.events)
      if (e.layer.empty() || selected_set.count(e.layer) != 0) {
        learning.events.push_back(e);
        ++learned.events;
      }
    for (std::size_t k = 0; k < snap.loss_epochs.size() && k < snap.losses.size(); ++k) {
      learning.loss_epochs.push_back(snap.loss_epochs[k]);
      learning.losses.push_back(snap.losses[k]);
    }
    for (const auto& l : snap.layers) {
      // Dormant rates exist only where the snapshot holds the dormant scores (mean |activation|).
      learned.layers[l.name] = {l.cka_previous, l.mean_abs.empty() ? NAN : l.dormant_rate};
      const auto pos = std::find(selected.begin(), selected.end(), l.name) - selected.begin();
      timeline.cka[static_cast<std::size_t>(pos)][static_cast<std::size_t>(index)] = l.cka_previous;
    }
    if (!pictures && !detail) continue;

    const SnapshotLabel at{snap.epoch, snap.loss};
    const std::string sfx = suffix(index);
    Reported rep;
    rep.index = index;
    if (detail) {
      details.begin_object();
      details.field("index", index).field("epoch", snap.epoch).field("loss", snap.loss).field("phase", snap.phase);
      details.key("layers").begin_array();
    }
    for (const auto& layer : snap.layers) {
      progress.step(fmt::format("epoch {}: layer {}", snap.epoch, layer.name));
      const GroupOrder order = order_by_group(layer);
      // t-SNE only for the pictured snapshots: it is the slow part, and the dashboard shows PCA elsewhere.
      std::optional<Embedding> embedding;
      if (layer.n_neurons >= 2) embedding = embed_layer(layer, opt.tsne && pictures, opt.seed);
      if (pictures) {
        LayerFiles files;
        const bool has_matrix = layer.n_neurons > 0 &&
                                static_cast<std::int64_t>(layer.correlation.size()) == layer.n_neurons * layer.n_neurons;
        std::vector<std::string> why;
        if (layer.n_neurons <= 0) {
          why.push_back("the layer captured no activations, nothing to draw");
        } else {
          const std::string name = stem[layer.name] + sfx + ext;
          const auto keep = [&rep, &out_dir, &name](std::string& slot, const char* prefix) -> std::string {
            slot = prefix + name;
            rep.files.push_back(slot);
            return (out_dir / slot).string();
          };
          // The original tool's views first (from the sample rows), then ours (from the statistics).
          const std::int64_t rows = sample_rows(layer).rows;
          if (rows > 0) draw_activation_heatmap(keep(files.heatmap, "pytorch_groups_heatmap_"), opt.format, layer, order, at);
          else why.push_back("no sample rows stored for this layer (reservoir_size 0), so no activation heatmap");
          if (rows >= 3) draw_sample_scatter(keep(files.scatter, "pytorch_groups_scatter_"), opt.format, layer, at, opt.seed);
          else if (rows > 0) why.push_back("fewer than 3 sample rows, so no sample scatter");
          if (has_matrix) {
            draw_layer_heatmap(keep(files.correlation, "pytorch_groups_correlation_"), opt.format, layer, order, at);
            draw_network(keep(files.network, "pytorch_groups_network_"), opt.format, layer, at);
          } else {
            why.push_back("no correlation matrix stored for this layer (store_correlation(false)), so no correlation "
                          "heatmap and no network");
          }
          if (!layer.heads.empty()) {
            const std::string heads = "pytorch_heads_" + stem[layer.name] + sfx + ext;
            draw_heads_heatmap((out_dir / heads).string(), opt.format, layer, at.epoch);
            rep.files.push_back(heads);
          }
          if (embedding) {
            files.scatter_method = embedding->method;
            draw_scatter(keep(files.neuron_scatter, "pytorch_neurons_scatter_"), opt.format, layer, order, *embedding, at);
            if (!embedding->note.empty()) why.push_back(embedding->note);
          } else {
            why.push_back("fewer than two neurons, so no neuron scatter");
          }
        }
        files.correlation_stored = has_matrix;
        files.why = join(why, "; ");
        for (const auto& w : why) rep.notes.push_back(fmt::format("epoch {}, layer {}: {}", snap.epoch, layer.name, w));
        rep.layer_files[layer.name] = files;
      }
      if (detail) write_dashboard_layer(details, layer, order, embedding, dashboard_cells, opt.seed);
    }
    if (detail) details.end_array().end_object();
    if (pictures) {
      if (!snap.layers.empty()) {
        std::vector<const LayerSnapshot*> layers;
        for (const auto& l : snap.layers) layers.push_back(&l);
        const std::string seed_view = "pytorch_all_layers_heatmap" + sfx + ext;
        draw_size_cohesion((out_dir / seed_view).string(), opt.format, layers, at);
        rep.files.push_back(seed_view);
        const std::string ours = "pytorch_all_layers_correlation" + sfx + ext;
        draw_all_layers_heatmap((out_dir / ours).string(), opt.format, layers, at);
        rep.files.push_back(ours);
      }
      for (auto& l : snap.layers) {
        // The reports need none of the big arrays.
        l.correlation = {};
        l.reservoir = {};
      }
      rep.snapshot = std::move(snap);
      reported.push_back(std::move(rep));
    }
  }
  details.end_array();
  timeline.loss_epochs = learning.loss_epochs;
  timeline.losses = learning.losses;
  for (const auto& s : learning.snapshots) {
    timeline.phases.push_back(s.phase);
    timeline.event_counts.push_back(s.events);
  }

  std::vector<std::string> run_files;
  progress.step("timeline");
  run_files.push_back("pytorch_timeline" + ext);
  draw_timeline((out_dir / run_files.back()).string(), opt.format, timeline);
  if (dashboard) {
    progress.step("dashboard");
    JsonWriter dash(detail::JsonLayout::compact, detail::JsonEscape::html);
    dash.begin_object();
    dash.key("run").begin_object();
    dash.field("file", opt.run_path).field("device", info.device).field("torch_version", info.torch_version);
    dash.field("library_version", info.library_version).field("created", info.created);
    dash.field("snapshots", size);
    dash.key("layers").array(selected);
    if (static_cast<std::int64_t>(detailed.size()) < size)
      dash.field("detail_note", fmt::format("Groups, matrices and scatter plots are embedded for {} of the {} "
                                            "snapshots (evenly spaced); the timelines show all of them.",
                                            detailed.size(), size));
    dash.end_object();
    write_dashboard_colors(dash);
    write_dashboard_timeline(dash, timeline);
    write_dashboard_events(dash, learning.events);
    dash.key("details").raw(details.str());
    if (!opt.all) {
      const auto pos = std::find(detailed.begin(), detailed.end(), pictured.back()) - detailed.begin();
      dash.field("initial_detail", static_cast<std::int64_t>(pos));
    }
    dash.end_object();
    run_files.push_back("pytorch_interactive_dashboard.html");
    write_dashboard((out_dir / run_files.back()).string(), echarts,
                    "NeuronMap dashboard \u2014 " + (opt.run_path.empty() ? std::string("run") : opt.run_path),
                    dash.take());
    result.dashboard_written = true;
  }
  progress.clear();

  for (auto& rep : reported) {
    const std::string sfx = suffix(rep.index);
    const std::string json_name = "pytorch_neuron_group_analysis_report" + sfx + ".json";
    const std::string text_name = "pytorch_neuron_group_analysis_report" + sfx + ".txt";
    AnalysisInput in;
    in.info = &info;
    in.run_path = opt.run_path;
    in.snapshots_in_file = size;
    in.snapshot_index = rep.index;
    in.snapshot = &rep.snapshot;
    in.summaries = &summaries;
    in.learning = &learning;
    in.layer_files = rep.layer_files;
    in.files = rep.files;
    in.files.insert(in.files.end(), run_files.begin(), run_files.end());
    in.files.push_back(json_name);
    in.files.push_back(text_name);
    in.notes = rep.notes;
    in.notes.insert(in.notes.end(), notes.begin(), notes.end());
    in.dashboard_written = dashboard;
    in.dashboard_note = dashboard_note;
    write_text_file(out_dir / json_name, render_json_report(in));
    write_text_file(out_dir / text_name, render_text_report(in));
    for (const auto& f : rep.files) result.files.push_back((out_dir / f).string());
    result.files.push_back((out_dir / json_name).string());
    result.files.push_back((out_dir / text_name).string());
    result.notes.insert(result.notes.end(), rep.notes.begin(), rep.notes.end());
  }
  for (const auto& f : run_files) result.files.push_back((out_dir / f).string());
  result.notes.insert(result.notes.end(), notes.begin(), notes.end());
  return result;
}

ReportResult write_report(const Run& run, const ReportOptions& options) {
  class Adapter final : public RunSource {
   public:
    explicit Adapter(const Run& run) : run_(run) {}
    const RunInfo& info() const override { return run_.info(); }
    std::int64_t size() const override { return run_.size(); }
    SnapshotSummary summary(std::int64_t index) const override { return run_.summary(index); }
    Snapshot snapshot(std::int64_t index) const override { return run_.snapshot(index); }

   private:
    const Run& run_;
  };
  return write_report(Adapter(run), options);
}

}  // namespace neuronmap::report
