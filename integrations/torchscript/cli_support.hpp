// What the `capture` and `layers` verbs run, behind a torch-free interface. The CLI itself never links
// LibTorch (`neuronmap inspect` starts in milliseconds, not the second LibTorch's loading takes): it
// loads these two verbs from a module, libneuronmap_cli_torchscript.so (cli_plugin.cpp), through the
// C entry points at the end, when one of them runs (sdk/cli/torchscript_plugin.cpp).
// capture() and layers() throw neuronmap::Error with a one-line message.
#pragma once

#include <string>
#include <vector>

namespace neuronmap::torchscript_cli {

struct CaptureArgs {
  std::string model;   ///< TorchScript file
  std::string input;   ///< HDF5 file with dataset /input
  std::string out;     ///< HDF5 file to write
  std::vector<std::string> layers;
  bool eval = false;   ///< model.eval() first
  bool train = false;  ///< model.train() first (neither: as saved)
  bool autograd = false;  ///< run with autograd on (default off, like torch.no_grad())
};

/// Runs the capture and returns the summary to print.
std::string capture(const CaptureArgs& args);

/// The table `neuronmap layers` prints; `input` may be empty.
std::string layers(const std::string& model, const std::string& input);

}  // namespace neuronmap::torchscript_cli

// The module's entry points: 0 and the verb's output in *out; 1 and the one-line message of a
// neuronmap::Error; 2 and the message of any other exception (an internal error).
// C names, so the CLI can find them with dlsym; they never throw. "_v1": the CLI and the module are
// built together, but a stale module from another build then fails loudly instead of misbehaving.
extern "C" {
int neuronmap_cli_capture_v1(const neuronmap::torchscript_cli::CaptureArgs* args, std::string* out) noexcept;
int neuronmap_cli_layers_v1(const std::string* model, const std::string* input, std::string* out) noexcept;
}
