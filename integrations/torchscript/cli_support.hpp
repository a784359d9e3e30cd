// What the `capture` and `layers` verbs run, behind a torch-free interface (the CLI's verb file
// stays light to compile). Both throw neuronmap::Error with a one-line message.
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
