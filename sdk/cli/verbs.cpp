#include "cli/verbs.hpp"

#include <CLI/CLI.hpp>

namespace neuronmap::cli {
namespace {
int g_exit_code = 0;
}

const std::vector<VerbRegistrar>& verbs() {
  static const std::vector<VerbRegistrar> all = {add_inspect, add_groups, add_report, add_compare,
                                                   add_capture, add_layers};
  return all;
}

void set_exit_code(int code) { g_exit_code = code; }

int run_selected(CLI::App& app) {
  // Verb callbacks run during parse; by now they have set the exit code.
  (void)app;
  return g_exit_code;
}

}  // namespace neuronmap::cli
