// `neuronmap heads RUN.h5 [--layer L] [--epoch E] [--json]`: per attention head and snapshot its
// entropy, distance, weights on the previous token and on itself, concentration, flags, role and the
// group it belongs to (heads are the neurons of an attention layer). Read in a child process like inspect.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/isolated.hpp"
#include "cli/verbs.hpp"
#include "detail/json_writer.hpp"
#include "neuronmap/errors.hpp"
#include "store/run_file.hpp"

namespace neuronmap::cli {
namespace {

using detail::JsonWriter;
using detail::RunReader;

constexpr std::size_t kPrevious = HeadStatistics::kOffsets - 1;
constexpr std::size_t kSelf = HeadStatistics::kOffsets;

double offset(const HeadStatistics& h, std::size_t k) {
  return k < h.offset_weight.size() ? h.offset_weight[k] : std::nan("");
}

std::string number(double v, const char* spec) {
  return std::isfinite(v) ? fmt::format(fmt::runtime(spec), v) : std::string("-");
}

std::string printable(std::string s) {
  for (auto& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return s;
}

struct Filter {
  std::optional<std::string> layer;
  std::optional<std::int64_t> epoch;
};

// Calls `f(snapshot, layer)` for every selected layer with head statistics; returns how many.
int for_each_attention_layer(const RunReader& run, const Filter& filter, const std::function<void()>& tick,
                             const std::function<void(const Snapshot&, const LayerSnapshot&)>& f) {
  int found = 0;
  for (std::int64_t i = 0; i < run.size(); ++i) {
    tick();
    if (filter.epoch && run.snapshot_header(i).epoch != *filter.epoch) continue;
    const Snapshot s = run.snapshot(i);
    for (const auto& layer : s.layers) {
      if (layer.heads.empty() || (filter.layer && layer.name != *filter.layer)) continue;
      ++found;
      f(s, layer);
    }
  }
  return found;
}

std::int32_t group_of(const LayerSnapshot& layer, std::size_t head) {
  return head < layer.labels.size() ? layer.labels[head] : -1;
}

std::string render_text(const RunReader& run, const Filter& filter, const std::function<void()>& tick) {
  std::string out;
  const int found = for_each_attention_layer(run, filter, tick, [&](const Snapshot& s, const LayerSnapshot& layer) {
    out += fmt::format("epoch {}  layer {}  ({} heads, {} groups)\n", s.epoch, printable(layer.name),
                       layer.heads.size(), layer.groups.size());
    out += fmt::format("  {:>4}  {:<14}  {:>7}  {:>6}  {:>8}  {:>6}  {:>6}  {:>7}  {:>9}  {:>5}  {}\n", "head", "role",
                       "entropy", "sd", "distance", "prev", "self", "concent", "collapsed", "group", "flags");
    for (std::size_t h = 0; h < layer.heads.size(); ++h) {
      const auto& hs = layer.heads[h];
      std::string flags = hs.uniform ? "uniform" : "";
      if (hs.collapsed) flags += flags.empty() ? "collapsed" : ",collapsed";
      const auto group = group_of(layer, h);
      out += fmt::format("  {:>4}  {:<14}  {:>7}  {:>6}  {:>8}  {:>6}  {:>6}  {:>7}  {:>9}  {:>5}  {}\n", h,
                         printable(hs.role), number(hs.entropy_mean, "{:.3f}"), number(hs.entropy_std, "{:.3f}"),
                         number(hs.distance_mean, "{:.2f}"), number(offset(hs, kPrevious), "{:.3f}"),
                         number(offset(hs, kSelf), "{:.3f}"), number(hs.concentration, "{:.3f}"),
                         number(hs.collapsed_fraction, "{:.3f}"), group < 0 ? std::string("-") : std::to_string(group),
                         flags.empty() ? "-" : flags);
    }
    out += "\n";
  });
  if (found == 0) {
    throw UsageError("no head statistics" + (filter.layer ? " for layer '" + *filter.layer + "'" : std::string()) +
                     (filter.epoch ? " at epoch " + std::to_string(*filter.epoch) : std::string()) +
                     " in this run file (heads are recorded for probed attention modules, format 5 and later)");
  }
  return out;
}

std::string render_json(const RunReader& run, const Filter& filter, const std::function<void()>& tick) {
  JsonWriter w;
  w.begin_object();
  w.key("snapshots").begin_array();
  for_each_attention_layer(run, filter, tick, [&](const Snapshot& s, const LayerSnapshot& layer) {
    w.begin_object();
    w.field("epoch", s.epoch).field("layer", layer.name);
    w.key("heads").begin_array();
    for (std::size_t h = 0; h < layer.heads.size(); ++h) {
      const auto& hs = layer.heads[h];
      w.begin_object();
      w.field("head", static_cast<std::int64_t>(h)).field("role", hs.role).field("queries", hs.queries);
      w.field("entropy_mean", hs.entropy_mean).field("entropy_std", hs.entropy_std);
      w.field("distance_mean", hs.distance_mean).field("previous_token", offset(hs, kPrevious));
      w.field("self", offset(hs, kSelf)).field("concentration", hs.concentration);
      w.field("collapsed_fraction", hs.collapsed_fraction).field("uniform", hs.uniform).field("collapsed", hs.collapsed);
      w.key("offset_weight").array(hs.offset_weight);
      w.field("group", static_cast<std::int64_t>(group_of(layer, h)));
      w.end_object();
    }
    w.end_array();
    w.end_object();
  });
  w.end_array();
  w.end_object();
  return w.take() + "\n";
}

}  // namespace

void add_heads(CLI::App& app) {
  auto* cmd = app.add_subcommand("heads", "Per attention head and snapshot: entropy, distance, previous-token "
                                          "weight, concentration, flags, role and group");
  auto path = std::make_shared<std::string>();
  auto layer = std::make_shared<std::string>();
  auto epoch = std::make_shared<std::int64_t>(-1);
  auto json = std::make_shared<bool>(false);
  cmd->add_option("run", *path, "the run file (e.g. outputs/run.h5)")->required();
  cmd->add_option("--layer", *layer, "only this attention layer");
  cmd->add_option("--epoch", *epoch, "only the snapshot of this epoch");
  cmd->add_flag("--json", *json, "print JSON instead of tables");
  cmd->callback([path, layer, epoch, json] {
    Filter filter;
    if (!layer->empty()) filter.layer = *layer;
    if (*epoch >= 0) filter.epoch = *epoch;
    Isolation how;
    how.verb = "heads";
    how.action = "reading '" + *path + "'";
    how.crashed = "reading '" + *path + "' crashed the HDF5 library";
    const std::string out = run_isolated(how, [&](const std::function<void()>& tick) {
      const RunReader run(*path);
      return *json ? render_json(run, filter, tick) : render_text(run, filter, tick);
    });
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    set_exit_code(0);
  });
}

}  // namespace neuronmap::cli
