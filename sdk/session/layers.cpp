// neuronmap::layers for C++ frontend models, and the words that say how an output becomes neurons.
#include "neuronmap/layers.hpp"

#include <fmt/format.h>
#include <torch/torch.h>

#include "probe/module_probes.hpp"

namespace neuronmap {

std::string neuron_words(LayerLayout layout, const std::vector<std::int64_t>& shape) {
  if (layout == LayerLayout::attention_heads) {
    if (shape.size() != 4) return "attention weights [B, H, T, S] -> B*T*S x H (heads as neurons)";
    return fmt::format("attention weights [{}] -> {} x {} (heads as neurons)", fmt::join(shape, ", "),
                       shape[0] * shape[2] * shape[3], shape[1]);
  }
  if (shape.empty()) {
    return layout == LayerLayout::channels_first
               ? "[B, C, spatial...] -> B x C (mean over the spatial dims); [B, C] as is"
               : "[B, F] as is; [B, T, F] -> B*T x F (one sample per token)";
  }
  const std::string dims = fmt::format("[{}]", fmt::join(shape, ", "));
  const auto rank = shape.size();
  if (rank == 1) return fmt::format("{} -> {} x 1", dims, shape[0]);
  if (rank == 2) return fmt::format("{} as is: {} x {}", dims, shape[0], shape[1]);
  if (layout == LayerLayout::channels_first) {
    return fmt::format("{} -> {} x {} (mean over {})", dims, shape[0], shape[1],
                       fmt::join(shape.begin() + 2, shape.end(), "x"));
  }
  std::int64_t samples = 1;
  for (std::size_t i = 0; i + 1 < rank; ++i) samples *= shape[i];
  return fmt::format("{} -> {} x {} (one sample per token)", dims, samples, shape.back());
}

std::vector<LayerDescription> layers(torch::nn::Module& model) {
  std::vector<LayerDescription> out;
  for (auto& info : detail::describe_layers(model)) {
    LayerDescription d;
    d.name = std::move(info.name);
    d.module_type = std::move(info.module_type);
    d.parameter_count = info.parameter_count;
    d.probeable = info.probeable;
    d.why_not = std::move(info.why_not);
    d.layout = info.layout;
    if (d.probeable) d.neurons = neuron_words(d.layout);
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace neuronmap
