// `neuronmap capture` and `neuronmap layers`: not built yet; they say so instead of pretending.
#include <CLI/CLI.hpp>

#include "cli/verbs.hpp"
#include "neuronmap/errors.hpp"

namespace neuronmap::cli {

void add_capture(CLI::App& app) {
  auto* verb = app.add_subcommand("capture", "Capture layer outputs of a TorchScript model (not available yet)");
  verb->allow_extras();
  verb->callback([] { throw Error("capture: not available in this build yet"); });
}

void add_layers(CLI::App& app) {
  auto* verb = app.add_subcommand("layers", "List the probeable layers of a TorchScript model (not available yet)");
  verb->allow_extras();
  verb->callback([] { throw Error("layers: not available in this build yet"); });
}

}  // namespace neuronmap::cli
