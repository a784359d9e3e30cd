// What the CLI fuzzer links instead of the report renderer (cairo) and the TorchScript runner (torch):
// they are tested on their own; the fuzzer is about argument handling and the verbs' input checks.
#include <CLI/CLI.hpp>

#include "cli/inspect_follow.hpp"
#include "cli/verbs.hpp"
#include "cli_support.hpp"
#include "neuronmap/errors.hpp"
#include "report/report.hpp"

namespace neuronmap {

report::ReportResult report::write_report(const Run& run, const ReportOptions& options) {
  report::ReportResult result;
  result.files.push_back(options.out_dir + "/report.json (not written: fuzz build)");
  result.notes.push_back("fuzz build: no pictures (" + std::to_string(run.size()) + " snapshots)");
  return result;
}

std::string torchscript_cli::capture(const CaptureArgs&) { throw Error("fuzz build: no TorchScript"); }
std::string torchscript_cli::layers(const std::string&, const std::string&) {
  throw Error("fuzz build: no TorchScript");
}

}  // namespace neuronmap

namespace neuronmap::cli {

void add_serve(CLI::App& app) {
  app.add_subcommand("serve", "not in the fuzz build")->callback([] { throw Error("fuzz build: no server"); });
}

int follow_run(const std::string&, bool, double) { throw Error("fuzz build: no --follow"); }

}  // namespace neuronmap::cli
