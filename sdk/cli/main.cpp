// The `neuronmap` command line: one verb per file (inspect.cpp, groups.cpp, ...), registered here.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "cli/verbs.hpp"
#include "neuronmap/errors.hpp"
#include "neuronmap/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{"neuronmap: inspect and analyse NeuronMap run files", "neuronmap"};
  app.set_version_flag("--version", NEURONMAP_VERSION_STRING);
  app.require_subcommand(1);
  for (const auto& add_verb : neuronmap::cli::verbs()) add_verb(app);
  // Verb callbacks run inside parse(), so their errors are caught here too.
  try {
    app.parse(argc, argv);
    return neuronmap::cli::run_selected(app);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : neuronmap::cli::kUsageExit;
  } catch (const neuronmap::Error& e) {
    std::fprintf(stderr, "neuronmap: %s\n", e.what());
    return neuronmap::cli::kErrorExit;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "neuronmap: internal error: %s\n", e.what());
    return neuronmap::cli::kErrorExit;
  }
}
