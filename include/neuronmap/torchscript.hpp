// attach() and layers() for TorchScript models (torch::jit::Module, e.g. from torch::jit::load).
// Link NeuronMap::torchscript. The model's saved code is not changed: probes are calls inserted into
// its compiled graphs while a session is attached.
#pragma once

#include <string>
#include <vector>

#include "neuronmap/layers.hpp"
#include "neuronmap/options.hpp"
#include "neuronmap/session.hpp"

namespace at {
class Tensor;
}
namespace torch::jit {
struct Module;
}

namespace neuronmap {

/// Attaches probes to named submodules of a TorchScript model, at any depth ("features.3",
/// "encoder.layers.0.linear1"; a model saved from nn.DataParallel answers with or without "module.").
/// Each probe sees what the submodule's forward returned, as a PyTorch forward hook would (element 0
/// of a tuple or list). Call before running the model, or after: either works. Methods fetched with
/// get_method() before attach() keep running the unprobed code; fetch them again.
/// Throws LayerNotFound (listing the valid names), UnsupportedModule, UsageError or FileError.
Session attach(torch::jit::Module& model, const std::vector<std::string>& layers, Options options = {});

/// Every submodule of a TorchScript model, in named_modules() order, with whether it can be probed.
std::vector<LayerDescription> layers(torch::jit::Module& model);

/// The same, plus each layer's output shape from one forward pass of `example_input` on a copy of the
/// model (eval mode, autograd on, so that e.g. TransformerEncoderLayer takes its ordinary path).
std::vector<LayerDescription> layers(torch::jit::Module& model, const at::Tensor& example_input);

}  // namespace neuronmap
