// Probes on the submodules of a live C++ frontend model: they see exactly what the submodule's
// forward returned (what a PyTorch forward hook would see) and hand it to a sink.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "neuronmap/fwd.hpp"

namespace at {
class Tensor;
}

namespace neuronmap::detail {

/// How a probed module's output is laid out, so it can become samples x neurons.
enum class OutputLayout {
  features_last,  ///< [B, F] or [B, T, F] (Linear, Embedding, LayerNorm, LSTM/GRU, activations on them)
  channels_first, ///< [B, C, spatial...] (Conv, BatchNorm, pooling, activations on them)
};

struct ProbeTarget {
  std::string name;         ///< as named_modules() gives it
  std::string module_type;  ///< e.g. "torch::nn::LinearImpl"
  OutputLayout layout = OutputLayout::features_last;
};

/// Receives every captured output. Called on the thread that ran the forward (any thread), inside
/// the op's end callback with recording switched off. Must not throw.
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

struct ProbeCore;

/// What every kind of probe set reports about its callbacks (read from its ProbeCore, probe_core.hpp).
class ProbeCounters {
 public:
  /// Outputs handed to the sink so far, gradients handed to it so far.
  std::uint64_t captured() const noexcept;
  std::uint64_t gradients_captured() const noexcept;
  /// Failures inside callbacks and gradient hooks (caught there, never thrown into the training step;
  /// e.g. an output modified in place before backward: that gradient is skipped), and the last one.
  std::uint64_t errors() const noexcept;
  std::string last_error() const;

 protected:
  ProbeCounters() = default;
  ~ProbeCounters() = default;
  std::shared_ptr<ProbeCore> counted_;  ///< set by the probe set's constructor
};

/// The probes of one session. Installed on construction (disabled), removed on destruction.
/// Every instance shares one global RecordFunction callback (so forwards on any thread are seen),
/// switched off while no instance is enabled. The destructor waits (up to 10 s) for captures in
/// flight on other threads; after it returns the sink is not called again, and neither the sink nor
/// the model is kept alive.
class ModuleProbes : public ProbeCounters {
 public:
  /// `gradients`: also hand dLoss/dOutput to sink->on_gradient during backward, for every output
  /// captured while autograd records it (a hook on the captured tensor; no backward, no call).
  /// Throws LayerNotFound (listing valid and closest names) or UnsupportedModule (saying why).
  ModuleProbes(torch::nn::Module& model, const std::vector<std::string>& names,
               std::shared_ptr<CaptureSink> sink, bool gradients = false);
  ~ModuleProbes();
  ModuleProbes(const ModuleProbes&) = delete;
  ModuleProbes& operator=(const ModuleProbes&) = delete;

  const std::vector<ProbeTarget>& targets() const noexcept;
  /// Switches capture on or off; off costs ~nothing per op. Safe from any thread.
  void enable(bool on) noexcept;
  bool enabled() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// Every submodule name of `model` (as named_modules() gives it), the root excluded.
std::vector<std::string> module_names(torch::nn::Module& model);

/// One submodule as `neuronmap::layers(model)` shows it.
struct LayerInfo {
  std::string name;         ///< as named_modules() gives it
  std::string module_type;  ///< e.g. "torch::nn::LinearImpl"
  std::int64_t parameter_count = 0;  ///< elements of its parameters, submodules included
  bool probeable = false;
  std::string why_not;      ///< empty when probeable: what attach() would say
  OutputLayout layout = OutputLayout::features_last;  ///< meaningful when probeable
};

/// Every submodule of `model`, in named_modules() order, with whether it can be probed and why not.
std::vector<LayerInfo> describe_layers(torch::nn::Module& model);

}  // namespace neuronmap::detail
