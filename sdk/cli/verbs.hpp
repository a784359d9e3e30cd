// How a CLI verb plugs in: each verb file defines a registrar and lists itself in verbs.cpp.
#pragma once

#include <functional>
#include <vector>

namespace CLI {
class App;
}

namespace neuronmap::cli {

/// Exit codes: 0 success, 1 usage error, 2 bad or unreadable input file (or any other error).
inline constexpr int kUsageExit = 1;
inline constexpr int kErrorExit = 2;

/// Adds a subcommand to `app` and sets its callback (the callback stores the exit code through
/// set_exit_code). Verbs throw neuronmap::Error for a one-line message and exit code 2.
using VerbRegistrar = std::function<void(CLI::App&)>;
const std::vector<VerbRegistrar>& verbs();

void set_exit_code(int code);
int run_selected(CLI::App& app);

/// What `neuronmap` does: parses the command line, runs the selected verb, returns the exit code.
/// Callable again and again in one process (the CLI fuzzer in tests/fuzz does).
int run_command_line(int argc, char** argv);

void add_inspect(CLI::App& app);
void add_groups(CLI::App& app);
void add_report(CLI::App& app);
void add_capture(CLI::App& app);
void add_layers(CLI::App& app);
void add_compare(CLI::App& app);
void add_serve(CLI::App& app);
void add_heads(CLI::App& app);

}  // namespace neuronmap::cli
