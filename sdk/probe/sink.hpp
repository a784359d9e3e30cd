// What every kind of probe (C++ frontend modules, TorchScript graphs, Python hooks) shares with the
// code that consumes its captures: the layer it was attached to, and the sink it hands outputs to.
#pragma once

#include <string>

#include "neuronmap/layers.hpp"  // LayerLayout

namespace at {
class Tensor;
}

namespace neuronmap::detail {

/// One probed layer, in the order the names were given to attach().
struct ProbeTarget {
  std::string name;         ///< as the model names it (named_modules())
  std::string module_type;  ///< e.g. "torch::nn::LinearImpl" or "torch.nn.modules.linear.Linear"
  LayerLayout layout = LayerLayout::features_last;  ///< how its output becomes samples x neurons
};

/// Receives every captured output. Called on the thread that ran the forward (any thread), with
/// RecordFunction recording switched off. Must not throw.
class CaptureSink {
 public:
  virtual ~CaptureSink() = default;
  virtual void on_output(int probe_index, const at::Tensor& output) noexcept = 0;
  /// dLoss/dOutput of a probed layer during backward, with the output it belongs to (gradient probes).
  virtual void on_gradient(int probe_index, const at::Tensor& output, const at::Tensor& gradient) noexcept {
    (void)probe_index;
    (void)output;
    (void)gradient;
  }
};

}  // namespace neuronmap::detail
