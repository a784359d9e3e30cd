#include "cli/verbs.hpp"

#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "neuronmap/errors.hpp"
#include "neuronmap/version.hpp"

namespace neuronmap::cli {
namespace {
int g_exit_code = 0;
}

const std::vector<VerbRegistrar>& verbs() {
  static const std::vector<VerbRegistrar> all = {add_inspect, add_groups, add_report, add_compare,
                                                   add_serve, add_capture, add_layers, add_heads};
  return all;
}

void set_exit_code(int code) { g_exit_code = code; }

int run_selected(CLI::App& app) {
  // Verb callbacks run during parse; by now they have set the exit code.
  (void)app;
  return g_exit_code;
}

int run_command_line(int argc, char** argv) {
  g_exit_code = 0;
  CLI::App app{"neuronmap: inspect and analyse NeuronMap run files", "neuronmap"};
  app.set_version_flag("--version", NEURONMAP_VERSION_STRING);
  app.require_subcommand(1);
  for (const auto& add_verb : verbs()) add_verb(app);
  // Verb callbacks run inside parse(), so their errors are caught here too.
  try {
    app.parse(argc, argv);
    return run_selected(app);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kUsageExit;
  } catch (const Error& e) {
    std::fprintf(stderr, "neuronmap: %s\n", e.what());
    return kErrorExit;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "neuronmap: internal error: %s\n", e.what());
    return kErrorExit;
  }
}

}  // namespace neuronmap::cli
