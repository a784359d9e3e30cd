// `neuronmap report RUN.h5 --out DIR [--epoch E|--all] [--layers a,b] [--format png|svg] [--tsne]`:
// the original tool's reports, pictures and dashboard. The work runs in a child process, as for
// `inspect`: a damaged file that crashes the HDF5 library yields an error message, not a crash.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/isolated.hpp"
#include "cli/verbs.hpp"
#include "neuronmap/errors.hpp"
#include "neuronmap/run.hpp"
#include "report/report.hpp"

namespace neuronmap::cli {
namespace {

struct ReportArgs {
  std::string run;
  report::ReportOptions options;
  std::int64_t epoch = 0;
  std::string format = "png";
  std::vector<std::string> layers;
  bool quiet = false;
};

/// The child's answer, one record a line: "F<path>", "N<note>", "D" (dashboard written).
std::string encode(const report::ReportResult& r) {
  const auto line = [](char tag, std::string text) {
    std::replace(text.begin(), text.end(), '\n', ' ');
    return tag + text + "\n";
  };
  std::string out;
  for (const auto& f : r.files) out += line('F', f);
  for (const auto& n : r.notes) out += line('N', n);
  if (r.dashboard_written) out += "D\n";
  return out;
}

report::ReportResult write_report_isolated(const ReportArgs& args) {
  Isolation how;
  how.verb = "report";
  how.action = "writing the report of '" + args.run + "'";
  how.crashed = "report: reading '" + args.run + "' crashed";
  const std::string reply = run_isolated(how, [&args](const std::function<void()>&) {
    const auto run = Run::open(args.run);
    return encode(report::write_report(run, args.options));
  });
  report::ReportResult result;
  std::size_t from = 0;
  while (from < reply.size()) {
    auto end = reply.find('\n', from);
    if (end == std::string::npos) end = reply.size();
    const std::string line = reply.substr(from, end - from);
    from = end + 1;
    if (line.empty()) continue;
    if (line[0] == 'F') result.files.push_back(line.substr(1));
    if (line[0] == 'N') result.notes.push_back(line.substr(1));
    if (line[0] == 'D') result.dashboard_written = true;
  }
  if (result.files.empty()) throw Error("report: writing the report of '" + args.run + "' failed without a message");
  return result;
}

}  // namespace

void add_report(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "report", "Write the analysis reports (JSON, text), pictures (the original tool's activation heatmaps, sample "
                "scatter plots and group size vs cohesion; our correlation heatmaps, neuron scatter plots, networks, "
                "timeline) and the interactive dashboard of a run");
  auto args = std::make_shared<ReportArgs>();
  cmd->add_option("run", args->run, "the run file (e.g. outputs/run.h5)")->required();
  cmd->add_option("--out,-o", args->options.out_dir, "output folder (created if missing)")->required();
  auto* epoch = cmd->add_option("--epoch", args->epoch, "report the snapshot taken at this epoch (default: the latest)");
  cmd->add_flag("--all", args->options.all, "every snapshot: per-epoch files with an _e<epoch> suffix")
      ->excludes(epoch);
  cmd->add_option("--layers", args->layers, "only these layers (comma-separated)")->delimiter(',');
  cmd->add_option("--format", args->format, "picture format")->check(CLI::IsMember({"png", "svg"}))
      ->capture_default_str();
  cmd->add_flag("--tsne", args->options.tsne, "place neurons by t-SNE (seeded) instead of PCA in the neuron scatter plots");
  cmd->add_option("--seed", args->options.seed, "seed for t-SNE and the randomised PCA of large layers")
      ->capture_default_str();
  cmd->add_flag("--no-dashboard", [args](std::int64_t) { args->options.dashboard = false; },
                "do not write the HTML dashboard");
  cmd->add_flag("--quiet,-q", args->quiet, "print nothing on success");
  cmd->callback([args, epoch] {
    auto& o = args->options;
    if (epoch->count() > 0) o.epoch = args->epoch;
    o.layers = args->layers;
    o.format = args->format == "svg" ? report::ImageFormat::svg : report::ImageFormat::png;
    o.run_path = args->run;
    o.progress = ::isatty(STDERR_FILENO) == 1 && !args->quiet;
    const auto result = write_report_isolated(*args);
    for (const auto& note : result.notes) std::fprintf(stderr, "neuronmap report: note: %s\n", note.c_str());
    if (!args->quiet) {
      std::printf("neuronmap report: wrote %zu files to %s%s\n", result.files.size(), o.out_dir.c_str(),
                  result.dashboard_written ? "" : " (no dashboard)");
      for (const auto& f : result.files) std::printf("  %s\n", f.c_str());
    }
    std::fflush(stdout);
    set_exit_code(0);
  });
}

}  // namespace neuronmap::cli
