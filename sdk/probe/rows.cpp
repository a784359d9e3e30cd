// From a captured tensor to samples x neurons: see rows.hpp.
#include "probe/rows.hpp"

#include <fmt/format.h>
#include <torch/torch.h>

#include "neuronmap/options.hpp"

namespace neuronmap::detail {

at::Tensor to_rows(const at::Tensor& output, LayerLayout layout, const Options& options, bool force_mean) {
  at::Tensor t = output.detach();
  if (t.is_complex()) t = at::real(t);
  if (!t.is_floating_point()) t = t.to(at::kFloat);  // integer and bool outputs
  const auto dims = t.dim();
  if (dims == 0) return t.reshape({1, 1});
  if (dims == 1) return t.reshape({t.size(0), 1});
  if (dims == 2) return t;
  if (layout == LayerLayout::attention_heads && dims == 4) {
    return t.permute({0, 2, 3, 1}).reshape({-1, t.size(1)});  // rows in (sample, query, key) order
  }
  if (layout == LayerLayout::channels_first) {
    const auto flat = t.reshape({t.size(0), t.size(1), -1});
    // amax, not max(2): max also computes the int64 argmax, 14x the time on a [128, 16, 32 x 32] output.
    return force_mean || options.spatial() == SpatialReduction::mean ? flat.mean(2) : flat.amax(2);
  }
  const auto features = t.size(dims - 1);
  if (options.sequence() == SequenceReduction::per_token) return t.reshape({-1, features});
  return t.reshape({t.size(0), -1, features}).mean(1);
}

std::string reduction_words(LayerLayout layout, const Options& options) {
  if (layout == LayerLayout::attention_heads) {
    return "attention weights [B, H, T, S] -> B*T*S x H (one sample per (sample, query, key), heads as neurons)";
  }
  if (layout == LayerLayout::channels_first) {
    return fmt::format("[B, C, spatial...] -> B x C by spatial {}; [B, C] as is", to_string(options.spatial()));
  }
  return options.sequence() == SequenceReduction::per_token ? "[B, F] as is; [B, T, F] -> B*T x F (per token)"
                                                            : "[B, F] as is; [B, T, F] -> B x F (mean over T)";
}

}  // namespace neuronmap::detail
