// Probes on the submodules of a TorchScript model: a call to the custom op neuronmap::capture is
// inserted after every prim::CallMethod that runs a probed submodule's forward, in the compiled graph
// of the method that makes the call. The op hands the submodule's output to a CaptureSink.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "neuronmap/layers.hpp"
#include "probe/probe_core.hpp"  // ProbeCounters
#include "probe/sink.hpp"

namespace torch::jit {
struct Module;
}

namespace neuronmap::detail {

/// The probes of one session on one TorchScript model. Installed on construction (disabled),
/// removed on destruction: the inserted calls leave the methods' graphs (so that a model saved
/// afterwards is clean), while plans the executor already compiled keep a call that does nothing.
/// Attach and detach must not run while another thread runs the same model.
class ScriptProbes : public ProbeCounters {
 public:
  /// `gradients`: also hand dLoss/dOutput to sink->on_gradient during backward. `attention_weights`: an
  /// nn.MultiheadAttention hands over its per-head weights [B, H, T, S] (else its output 0, what a
  /// forward hook keeps). Throws LayerNotFound (listing the valid names) or UnsupportedModule (saying why).
  ScriptProbes(torch::jit::Module& model, const std::vector<std::string>& names, std::shared_ptr<CaptureSink> sink,
               bool gradients = false, bool attention_weights = true);
  ~ScriptProbes();
  ScriptProbes(const ScriptProbes&) = delete;
  ScriptProbes& operator=(const ScriptProbes&) = delete;

  const std::vector<ProbeTarget>& targets() const noexcept;
  /// Switches capture on or off; off costs one relaxed atomic load per probed call. Any thread.
  void enable(bool on) noexcept;
  bool enabled() const noexcept;

  /// The submodule names the probes resolved to (e.g. "module.fc1" for "fc1" on a DataParallel save).
  const std::vector<std::string>& resolved_names() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

/// Every submodule of `model` (root excluded), without running it.
std::vector<LayerDescription> describe_script_layers(torch::jit::Module& model);

/// "torch.nn.modules.linear.Linear" for "__torch__.torch.nn.modules.linear.___torch_mangle_3.Linear".
std::string script_type_name(const std::string& qualified_name);

/// "<model type>.<method>" of every method graph that currently holds an inserted capture call (tests).
std::vector<std::string> instrumented_methods(torch::jit::Module& model);

}  // namespace neuronmap::detail
