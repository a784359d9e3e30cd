// `neuronmap capture` and `neuronmap layers`: TorchScript models, run by NeuronMap::torchscript.
#include <cstdio>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli/verbs.hpp"
#include "cli_support.hpp"

namespace neuronmap::cli {

void add_capture(CLI::App& app) {
  auto args = std::make_shared<torchscript_cli::CaptureArgs>();
  auto* verb = app.add_subcommand(
      "capture", "One forward pass of a TorchScript model; writes each layer's raw output (float32, full shape) "
                 "and the model output (/output) to HDF5");
  verb->add_option("model", args->model, "TorchScript model (.pt)")->required();
  verb->add_option("--input", args->input, "HDF5 file with the input tensor in dataset /input (float32 or int64)")
      ->required();
  verb->add_option("--layers", args->layers, "Comma-separated layer names (as `neuronmap layers` lists them)")
      ->required()
      ->delimiter(',');
  verb->add_option("--out", args->out, "HDF5 file to write (replaced if it exists)")->required();
  auto* eval = verb->add_flag("--eval", args->eval, "Put the model in eval mode first (default: as saved)");
  verb->add_flag("--train", args->train, "Put the model in training mode first")->excludes(eval);
  verb->add_flag("--grad", args->autograd, "Run with autograd on (default off, like torch.no_grad())");
  verb->callback([args] {
    std::fputs(torchscript_cli::capture(*args).c_str(), stdout);
    set_exit_code(0);
  });
}

void add_layers(CLI::App& app) {
  auto model = std::make_shared<std::string>();
  auto input = std::make_shared<std::string>();
  auto* verb = app.add_subcommand("layers", "List the submodules of a TorchScript model that attach() can probe");
  verb->add_option("model", *model, "TorchScript model (.pt)")->required();
  verb->add_option("--input", *input,
                   "HDF5 file with an example input in dataset /input: adds each layer's output shape");
  verb->callback([model, input] {
    std::fputs(torchscript_cli::layers(*model, *input).c_str(), stdout);
    set_exit_code(0);
  });
}

}  // namespace neuronmap::cli
