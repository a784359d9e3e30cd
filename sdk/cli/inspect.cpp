// `neuronmap inspect RUN.h5 [--json] [--events] [--follow [--idle-exit N]]`: run metadata, layers, a row per snapshot and layer
// (with the snapshot's learning phase and number of events) and, with --events or --json, the events.
// The file is read in a child process: a damaged file that crashes HDF5 yields an error, not a crash.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/inspect_follow.hpp"
#include "cli/isolated.hpp"
#include "cli/run_json.hpp"
#include "cli/verbs.hpp"
#include "detail/json_writer.hpp"
#include "neuronmap/errors.hpp"
#include "neuronmap/run.hpp"
#include "store/run_file.hpp"

namespace neuronmap::cli {
namespace {

// The store's reader rather than neuronmap::Run: it also reads a snapshot's events without its layers.
using Reader = detail::RunReader;
using detail::JsonWriter;

std::string render_json(const std::string& path, const Reader& run, const std::function<void()>& tick) {
  JsonWriter w;
  w.begin_object();
  write_run_fields(w, path, run.info());
  w.field("size", run.size());
  w.key("snapshots").begin_array();
  for (std::int64_t i = 0; i < run.size(); ++i) {
    tick();
    write_snapshot_object(w, i, run.summary(i), run.snapshot_header(i));
  }
  w.end_array();
  w.end_object();
  return w.take() + "\n";
}

/// Terminal columns of a UTF-8 string: its code points (bytes that do not continue a sequence).
std::size_t display_width(const std::string& s) {
  std::size_t n = 0;
  for (const char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

/// Columns padded to their widest cell; numeric columns right-aligned.
class TextTable {
 public:
  TextTable(std::vector<std::string> header, std::vector<bool> numeric)
      : numeric_(std::move(numeric)) {
    rows_.push_back(std::move(header));
  }
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string render(const std::string& indent) const {
    std::vector<std::size_t> width(rows_.front().size(), 0);
    for (const auto& row : rows_)
      for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], display_width(row[c]));
    std::string out;
    for (const auto& row : rows_) {
      std::string line = indent;
      for (std::size_t c = 0; c < row.size(); ++c) {
        const std::string pad(width[c] - display_width(row[c]), ' ');
        line += numeric_[c] ? pad + row[c] : row[c] + (c + 1 < row.size() ? pad : "");
        if (c + 1 < row.size()) line += "  ";
      }
      out += line + "\n";
    }
    return out;
  }

 private:
  std::vector<bool> numeric_;
  std::vector<std::vector<std::string>> rows_;
};

/// Control characters from a damaged file must not reach the terminal.
std::string printable(const std::string& s) {
  std::string out = s;
  for (auto& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return out;
}

std::string format_double(double v, const char* spec) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt::format(fmt::runtime(spec), v);
}

/// The layer's weakest member over all its groups (NaN when the file did not store it).
double smallest_member_correlation(const LayerSummary& l) {
  double smallest = std::numeric_limits<double>::infinity();
  for (const auto& g : l.group_summaries) {
    if (std::isnan(g.min_member_correlation)) return g.min_member_correlation;
    smallest = std::min(smallest, g.min_member_correlation);
  }
  return smallest;
}

std::string render_text(const std::string& path, const Reader& run, bool list_events,
                        const std::function<void()>& tick) {
  const auto& info = run.info();
  std::string out;
  TextTable meta({"", ""}, {false, false});
  meta.add({"run file", printable(path)});
  meta.add({"format_version", std::to_string(info.format_version)});
  meta.add({"library", "NeuronMap " + printable(info.library_version)});
  meta.add({"torch", info.torch_version.empty() ? "-" : printable(info.torch_version)});
  meta.add({"device", info.device.empty() ? "-" : printable(info.device)});
  meta.add({"created", info.created.empty() ? "-" : printable(info.created)});
  meta.add({"options", info.options_json.empty() ? "-" : printable(info.options_json)});
  if (!info.tag_names.empty()) {
    std::string tags;
    for (const auto& t : info.tag_names) tags += (tags.empty() ? "" : ", ") + printable(t);
    meta.add({"tags", tags});
  }
  meta.add({"snapshots", std::to_string(run.size())});
  // Drop the empty header row the table carries.
  const auto meta_text = meta.render("");
  out += meta_text.substr(meta_text.find('\n') + 1);

  out += fmt::format("\nlayers ({})\n", info.layers.size());
  if (!info.layers.empty()) {
    TextTable layers({"#", "name", "type", "reduction"}, {true, false, false, false});
    for (std::size_t i = 0; i < info.layers.size(); ++i) {
      const auto& l = info.layers[i];
      layers.add({std::to_string(i), printable(l.name), l.module_type.empty() ? "-" : printable(l.module_type),
                  l.reduction.empty() ? "-" : printable(l.reduction)});
    }
    out += layers.render("  ");
  }

  out += fmt::format("\nsnapshots ({})\n", run.size());
  std::size_t n_events = 0;
  if (run.size() > 0) {
    TextTable rows({"#", "epoch", "loss", "phase", "events", "layer", "neurons", "samples", "groups", "loose",
                    "cohesion", "min member r", "dead", "dropped", "budget", "ref rows"},
                   {true, true, true, false, true, false, true, true, true, true, true, true, true, true, true, true});
    TextTable events({"#", "epoch", "layer", "kind", "lineages", "strength", "skill", "loss change"},
                     {true, true, false, false, false, true, false, true});
    for (std::int64_t i = 0; i < run.size(); ++i) {
      tick();
      const auto s = run.summary(i);
      const auto header = run.snapshot_header(i);
      const std::string phase = header.phase.empty() ? "-" : printable(header.phase);
      const std::string count = std::to_string(header.events.size());
      n_events += header.events.size();
      if (s.layers.empty())
        rows.add({std::to_string(i), std::to_string(s.epoch), format_double(s.loss, "{:.6g}"), phase, count, "-", "",
                  "", "", "", "", "", "", "", "", ""});
      for (const auto& l : s.layers)
        rows.add({std::to_string(i), std::to_string(s.epoch), format_double(s.loss, "{:.6g}"), phase, count,
                  printable(l.name), std::to_string(l.n_neurons), std::to_string(l.samples), std::to_string(l.groups),
                  std::to_string(l.loose_groups()), format_double(l.mean_cohesion, "{:.3f}"),
                  l.group_summaries.empty() ? "-" : format_double(smallest_member_correlation(l), "{:.3f}"),
                  std::to_string(l.dead),
                  std::to_string(l.counters.dropped_batches), std::to_string(l.counters.budget_skipped_batches),
                  std::to_string(l.reference_rows)});
      for (const auto& e : header.events) {
        std::string lineages;
        for (auto id : e.lineages) lineages += (lineages.empty() ? "" : ",") + std::to_string(id);
        events.add({std::to_string(i), std::to_string(e.epoch), e.layer.empty() ? "-" : printable(e.layer),
                    e.kind.empty() ? "-" : printable(e.kind), lineages.empty() ? "-" : lineages,
                    format_double(e.strength, "{:.3f}"), e.skill_category.empty() ? "-" : printable(e.skill_category),
                    format_double(e.loss_change, "{:+.4g}")});
      }
    }
    out += rows.render("  ");
    if (list_events) {
      out += fmt::format("\nevents ({})\n", n_events);
      if (n_events > 0) out += events.render("  ");
    } else if (n_events > 0) {
      out += fmt::format("\n{} events; --events lists them\n", n_events);
    }
  }
  return out;
}

}  // namespace

void add_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Show a run file's metadata, layers and a row per snapshot and layer");
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto events = std::make_shared<bool>(false);
  auto timeout = std::make_shared<unsigned>(30);
  auto follow = std::make_shared<bool>(false);
  auto idle_exit = std::make_shared<double>(0);
  cmd->add_option("run", *path, "the run file (e.g. outputs/run.h5)")->required();
  cmd->add_flag("--json", *json, "print JSON instead of tables (always lists the events)");
  cmd->add_flag("--events", *events, "list the learning events of every snapshot");
  cmd->add_option("--timeout", *timeout, "give up when one read takes longer than this many seconds (damaged files)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 86400u));
  cmd->add_flag("--follow", *follow,
                "then print a row (with --json: one JSON line) per snapshot as it is committed, until interrupted");
  cmd->add_option("--idle-exit", *idle_exit, "with --follow: stop when no snapshot came for this many seconds (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e9));
  cmd->callback([path, json, events, timeout, follow, idle_exit] {
    if (*follow) {
      set_exit_code(follow_run(*path, *json, *idle_exit));
      return;
    }
    Isolation how;
    how.verb = "inspect";
    how.action = "reading '" + *path + "'";
    how.crashed = "reading '" + *path + "' crashed the HDF5 library";
    // Damaged files can send HDF5 into very long retry loops: a watchdog ends a read that hangs.
    how.step_timeout = *timeout;
    how.stalled = "reading '" + *path + "' made no progress for " + std::to_string(*timeout) +
                  " s: the file is probably damaged (or try a larger --timeout)";
    const std::string out = run_isolated(how, [&](const std::function<void()>& tick) {
      const Reader run(*path);
      return *json ? render_json(*path, run, tick) : render_text(*path, run, *events, tick);
    });
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    set_exit_code(0);
  });
}

}  // namespace neuronmap::cli
