// How a captured output becomes samples x neurons (rows x columns), the one reduction every probe's
// sink applies, and the words that describe it in the run file.
#pragma once

#include <string>

#include "neuronmap/fwd.hpp"
#include "neuronmap/layers.hpp"  // LayerLayout

namespace at {
class Tensor;
}

namespace neuronmap::detail {

/// Reduces a captured output to [samples, neurons] on its own device (no copy to the host yet):
/// [B, F] as is; [B, C, spatial...] to B x C by options.spatial() when channels-first; [B, T, F] to
/// B*T x F or B x F by options.sequence(); attention weights [B, H, T, S] to B*T*S x H; complex outputs by their real part, integer and bool ones
/// as float32. Gradients are always reduced by the spatial mean (`force_mean`), whatever the
/// activations use.
at::Tensor to_rows(const at::Tensor& output, LayerLayout layout, const Options& options, bool force_mean = false);

/// What to_rows does to an output of `layout` under `options`, in words.
std::string reduction_words(LayerLayout layout, const Options& options);

}  // namespace neuronmap::detail
