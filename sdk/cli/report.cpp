// `neuronmap report`: not built yet; says so instead of pretending.
#include <CLI/CLI.hpp>

#include "cli/verbs.hpp"
#include "neuronmap/errors.hpp"

namespace neuronmap::cli {

void add_report(CLI::App& app) {
  auto* verb = app.add_subcommand("report", "Write reports, pictures and the dashboard of a run (not available yet)");
  verb->allow_extras();
  verb->callback([] { throw Error("report: not available in this build yet"); });
}

}  // namespace neuronmap::cli
