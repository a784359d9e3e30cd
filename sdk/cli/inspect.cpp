// `neuronmap inspect RUN.h5 [--json] [--events]`: run metadata, layers, a row per snapshot and layer
// (with the snapshot's learning phase and number of events) and, with --events or --json, the events.
// The file is read in a child process: a damaged file that crashes HDF5 yields an error, not a crash.
#include <fcntl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/json.hpp"
#include "cli/verbs.hpp"
#include "neuronmap/errors.hpp"
#include "neuronmap/run.hpp"
#include "store/run_file.hpp"

namespace neuronmap::cli {
namespace {

// The store's reader rather than neuronmap::Run: it also reads a snapshot's events without its layers.
using Reader = detail::RunReader;

// ---- JSON ---------------------------------------------------------------------------------------

std::string json_counters(const Counters& c) {
  return fmt::format(
      "{{\"captured_batches\": {}, \"dropped_batches\": {}, \"skipped_batches\": {}, \"rows\": {}, "
      "\"nonfinite_rows\": {}, \"errors\": {}}}",
      c.captured_batches, c.dropped_batches, c.skipped_batches, c.rows, c.nonfinite_rows, c.errors);
}

std::string json_groups(const std::vector<GroupSummary>& groups) {
  std::string out = "[";
  for (std::size_t k = 0; k < groups.size(); ++k) {
    const auto& g = groups[k];
    out += fmt::format("{}{{\"group_id\": {}, \"size\": {}, \"cohesion\": {}, \"min_member_correlation\": {}, "
                       "\"loose\": {}}}",
                       k == 0 ? "" : ", ", g.group_id, g.size, json_number(g.cohesion_score),
                       json_number(g.min_member_correlation), g.loose);
  }
  return out + "]";
}

std::string json_event(const Event& e) {
  std::string lineages = "[";
  for (std::size_t k = 0; k < e.lineages.size(); ++k) lineages += (k == 0 ? "" : ", ") + std::to_string(e.lineages[k]);
  lineages += "]";
  return fmt::format("{{\"epoch\": {}, \"layer\": {}, \"kind\": {}, \"lineages\": {}, \"strength\": {}, "
                     "\"skill_category\": {}, \"loss_change\": {}}}",
                     e.epoch, json_string(e.layer), json_string(e.kind), lineages, json_number(e.strength),
                     json_string(e.skill_category), json_number(e.loss_change));
}

std::string render_json(const std::string& path, const Reader& run, const std::function<void()>& tick) {
  const auto& info = run.info();
  std::string out = "{\n";
  out += "  \"file\": " + json_string(path) + ",\n";
  out += fmt::format("  \"format_version\": {},\n", info.format_version);
  out += "  \"library_version\": " + json_string(info.library_version) + ",\n";
  out += "  \"torch_version\": " + json_string(info.torch_version) + ",\n";
  out += "  \"device\": " + json_string(info.device) + ",\n";
  out += "  \"created\": " + json_string(info.created) + ",\n";
  out += "  \"options_json\": " + json_string(info.options_json) + ",\n";
  out += "  \"tag_names\": [";
  for (std::size_t i = 0; i < info.tag_names.size(); ++i) out += (i == 0 ? "" : ", ") + json_string(info.tag_names[i]);
  out += "],\n";
  out += "  \"layers\": [";
  for (std::size_t i = 0; i < info.layers.size(); ++i) {
    const auto& l = info.layers[i];
    out += i == 0 ? "\n" : ",\n";
    out += "    {\"name\": " + json_string(l.name) + ", \"module_type\": " + json_string(l.module_type) +
           ", \"reduction\": " + json_string(l.reduction) + "}";
  }
  out += info.layers.empty() ? "],\n" : "\n  ],\n";
  out += fmt::format("  \"size\": {},\n", run.size());
  out += "  \"snapshots\": [";
  for (std::int64_t i = 0; i < run.size(); ++i) {
    tick();
    const auto s = run.summary(i);
    const auto header = run.snapshot_header(i);
    out += i == 0 ? "\n" : ",\n";
    out += fmt::format("    {{\"index\": {}, \"epoch\": {}, \"loss\": {}, \"timestamp\": {}, \"phase\": {}, "
                       "\"n_events\": {}, \"events\": [",
                       i, s.epoch, json_number(s.loss), json_number(s.timestamp), json_string(header.phase),
                       header.events.size());
    for (std::size_t k = 0; k < header.events.size(); ++k)
      out += (k == 0 ? "\n      " : ",\n      ") + json_event(header.events[k]);
    out += header.events.empty() ? "], \"layers\": [" : "\n    ], \"layers\": [";
    for (std::size_t k = 0; k < s.layers.size(); ++k) {
      const auto& l = s.layers[k];
      out += k == 0 ? "\n" : ",\n";
      out += "      {\"name\": " + json_string(l.name) +
             fmt::format(", \"n_neurons\": {}, \"samples\": {}, \"groups\": {}, \"loose_groups\": {}, "
                         "\"mean_cohesion\": {}, \"dead\": {}, \"dropped_batches\": {}, \"reference_rows\": {}, "
                         "\"counters\": ",
                         l.n_neurons, l.samples, l.groups, l.loose_groups(), json_number(l.mean_cohesion), l.dead,
                         l.counters.dropped_batches, l.reference_rows) +
             json_counters(l.counters) + ", \"groups_detail\": " + json_groups(l.group_summaries) + "}";
    }
    out += s.layers.empty() ? "]}" : "\n    ]}";
  }
  out += run.size() == 0 ? "]\n" : "\n  ]\n";
  out += "}\n";
  return out;
}

// ---- Text ---------------------------------------------------------------------------------------

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
                    "cohesion", "min member r", "dead", "dropped", "ref rows"},
                   {true, true, true, false, true, false, true, true, true, true, true, true, true, true, true});
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
                  "", "", "", "", "", "", "", ""});
      for (const auto& l : s.layers)
        rows.add({std::to_string(i), std::to_string(s.epoch), format_double(s.loss, "{:.6g}"), phase, count,
                  printable(l.name), std::to_string(l.n_neurons), std::to_string(l.samples), std::to_string(l.groups),
                  std::to_string(l.loose_groups()), format_double(l.mean_cohesion, "{:.3f}"),
                  l.group_summaries.empty() ? "-" : format_double(smallest_member_correlation(l), "{:.3f}"),
                  std::to_string(l.dead),
                  std::to_string(l.counters.dropped_batches), std::to_string(l.reference_rows)});
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

// ---- Isolation ----------------------------------------------------------------------------------

bool write_all(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

/// Renders in a child process and returns its output. The child answers 'O' + output or 'E' + message.
/// A watchdog (SIGALRM) ends the child when one read takes longer than `step_timeout` seconds: damaged
/// files can send HDF5 into very long retry loops.
std::string render_isolated(const std::string& path, bool json, bool list_events, unsigned step_timeout) {
  int fds[2];
  if (::pipe(fds) != 0) throw Error(std::string("inspect: cannot create a pipe: ") + std::strerror(errno));
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw Error(std::string("inspect: cannot fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::close(fds[0]);
    std::string reply;
    const auto tick = [step_timeout] { ::alarm(step_timeout); };
    try {
      tick();
      const Reader run(path);
      reply = "O" + (json ? render_json(path, run, tick) : render_text(path, run, list_events, tick));
      ::alarm(0);
    } catch (const Error& e) {
      reply = std::string("E") + e.what();
    } catch (const std::exception& e) {
      reply = std::string("Einternal error reading '") + path + "': " + e.what();
    }
    const bool ok = write_all(fds[1], reply);
    ::close(fds[1]);
    ::_exit(ok ? 0 : 3);  // skip atexit handlers and static destructors of the parent's copy
  }
  ::close(fds[1]);
  std::string reply;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
    throw FormatError("reading '" + path + "' made no progress for " + std::to_string(step_timeout) +
                      " s: the file is probably damaged (or try a larger --timeout)");
  if (WIFSIGNALED(status))
    throw FormatError("reading '" + path + "' crashed the HDF5 library (signal " + std::to_string(WTERMSIG(status)) +
                      "): the file is damaged");
  if (reply.empty() || (reply[0] != 'O' && reply[0] != 'E'))
    throw Error("inspect: reading '" + path + "' failed without a message");
  if (reply[0] == 'E') {
    std::string message = reply.substr(1);
    std::replace(message.begin(), message.end(), '\n', ' ');
    throw Error(message);
  }
  return reply.substr(1);
}

}  // namespace

void add_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Show a run file's metadata, layers and a row per snapshot and layer");
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto events = std::make_shared<bool>(false);
  auto timeout = std::make_shared<unsigned>(30);
  cmd->add_option("run", *path, "the run file (e.g. outputs/run.h5)")->required();
  cmd->add_flag("--json", *json, "print JSON instead of tables (always lists the events)");
  cmd->add_flag("--events", *events, "list the learning events of every snapshot");
  cmd->add_option("--timeout", *timeout, "give up when one read takes longer than this many seconds (damaged files)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 86400u));
  cmd->callback([path, json, events, timeout] {
    const std::string out = render_isolated(*path, *json, *events, *timeout);
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    set_exit_code(0);
  });
}

}  // namespace neuronmap::cli
