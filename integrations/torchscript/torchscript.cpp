// neuronmap::attach and neuronmap::layers for TorchScript models.
#include "neuronmap/torchscript.hpp"

#include <mutex>

#include <fmt/format.h>
#include <torch/script.h>

#include "neuronmap/errors.hpp"
#include "probe/probe_core.hpp"
#include "probe/probe_set.hpp"
#include "script_probes.hpp"
#include "session/make_session.hpp"

namespace neuronmap {
namespace {

std::string device_of(const torch::jit::Module& model) {
  for (const auto& p : model.parameters()) return p.device().str();
  for (const auto& b : model.buffers()) return b.device().str();
  return "cpu";
}

// Keeps the shape of the first output per layer and counts the calls.
class ShapeSink final : public detail::CaptureSink {
 public:
  explicit ShapeSink(std::size_t n) : shapes_(n), calls_(n, 0) {}
  void on_output(int probe_index, const at::Tensor& output) noexcept override {
    try {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto i = static_cast<std::size_t>(probe_index);
      if (calls_[i]++ == 0) shapes_[i].assign(output.sizes().begin(), output.sizes().end());
    } catch (...) {
    }
  }
  std::vector<std::vector<std::int64_t>> shapes_;
  std::vector<int> calls_;

 private:
  std::mutex mutex_;
};

}  // namespace

Session attach(torch::jit::Module& model, const std::vector<std::string>& layers, Options options) {
  detail::check_layer_names(layers);  // before anything else, as for C++ frontend models
  const bool gradients = options.gradients();
  auto make_probes = [&](std::shared_ptr<detail::CaptureSink> sink) -> std::unique_ptr<detail::ProbeSet> {
    return std::make_unique<detail::ProbeSetOf<detail::ScriptProbes>>(model, layers, std::move(sink), gradients);
  };
  return detail::make_session(make_probes, device_of(model), std::move(options));
}

std::vector<LayerDescription> layers(torch::jit::Module& model) { return detail::describe_script_layers(model); }

std::vector<LayerDescription> layers(torch::jit::Module& model, const at::Tensor& example_input) {
  auto out = detail::describe_script_layers(model);
  std::vector<std::string> names;
  std::vector<std::size_t> rows;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!out[i].probeable) continue;
    names.push_back(out[i].name);
    rows.push_back(i);
  }
  if (names.empty()) return out;
  // A copy (its own types and tensors): the model's graphs and buffers (BatchNorm statistics) stay as they are.
  torch::jit::Module copy = model.clone();
  copy.eval();
  auto sink = std::make_shared<ShapeSink>(names.size());
  {
    detail::ScriptProbes probes(copy, names, sink);
    probes.enable(true);
    try {
      torch::AutoGradMode autograd(true);
      copy.forward({example_input});
    } catch (const std::exception& e) {
      const std::string what = e.what();
      throw UsageError(fmt::format("layers: the example input (shape [{}]) does not run through the model: {}",
                                   fmt::join(example_input.sizes(), ", "), what.substr(0, what.find('\n'))));
    }
  }
  for (std::size_t k = 0; k < names.size(); ++k) {
    auto& d = out[rows[k]];
    d.calls = sink->calls_[k];
    d.output_shape = sink->shapes_[k];
    d.neurons = d.calls > 0 ? neuron_words(d.layout, d.output_shape) : "did not run for this input";
  }
  return out;
}

}  // namespace neuronmap
