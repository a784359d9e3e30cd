// What `neuronmap::layers(model)` tells about a model's submodules before you attach: names, types,
// parameter counts, whether each can be probed, and how its output would become samples x neurons.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "neuronmap/fwd.hpp"

namespace neuronmap {

/// How a layer's output is laid out, which decides how it becomes samples x neurons.
enum class LayerLayout {
  features_last,   ///< [B, F] as is; [B, T, F] -> B*T samples x F neurons (one sample per token)
  channels_first,  ///< [B, C, spatial...] -> B samples x C neurons (mean over the spatial dims)
  /// Per-head attention weights [B, H, T, S] -> B*T*S samples (sample, query, key) x H neurons (heads)
  attention_heads,
};

/// One submodule of a model, as attach() would see it, before attaching (once probed, the run file
/// records it as a LayerInfo; docs/API.md lists the layer types).
struct LayerDescription {
  std::string name;                  ///< the name to pass to attach(), as PyTorch prints it ("features.3")
  std::string module_type;           ///< e.g. "torch::nn::LinearImpl" or "torch.nn.modules.linear.Linear"
  std::int64_t parameter_count = 0;  ///< elements of its parameters, submodules included
  bool probeable = false;
  std::string why_not;               ///< empty when probeable: what attach() would say
  LayerLayout layout = LayerLayout::features_last;  ///< meaningful when probeable
  /// With an example input: the shape of what the layer returned (element 0 of a tuple), else empty.
  std::vector<std::int64_t> output_shape;
  /// With an example input: how many times the layer ran in that forward pass (0: it did not run).
  int calls = 0;
  /// How the output becomes samples x neurons, in words (with the shape when known).
  std::string neurons;
};

inline const char* to_string(LayerLayout layout) noexcept {
  switch (layout) {
    case LayerLayout::channels_first: return "channels_first";
    case LayerLayout::attention_heads: return "attention_heads";
    case LayerLayout::features_last: break;
  }
  return "features_last";
}

/// Every submodule of a C++ frontend model, in named_modules() order (the root excluded).
std::vector<LayerDescription> layers(torch::nn::Module& model);

/// How an output of `shape` (empty: unknown) with `layout` becomes samples x neurons, in words.
std::string neuron_words(LayerLayout layout, const std::vector<std::int64_t>& shape = {});

}  // namespace neuronmap
