// Probes on the submodules of a live C++ frontend model: they see exactly what the submodule's
// forward returned (what a PyTorch forward hook would see) and hand it to a sink.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "neuronmap/fwd.hpp"
#include "neuronmap/layers.hpp"  // LayerLayout
#include "probe/probe_core.hpp"  // ProbeCounters
#include "probe/sink.hpp"

namespace neuronmap::detail {

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

/// Whether and how one submodule can be probed, as `neuronmap::layers(model)` shows it.
struct ModuleProbeability {
  std::string name;         ///< as named_modules() gives it
  std::string module_type;  ///< e.g. "torch::nn::LinearImpl"
  std::int64_t parameter_count = 0;  ///< elements of its parameters, submodules included
  bool probeable = false;
  std::string why_not;      ///< empty when probeable: what attach() would say
  LayerLayout layout = LayerLayout::features_last;  ///< meaningful when probeable
};

/// Every submodule of `model`, in named_modules() order, with whether it can be probed and why not.
std::vector<ModuleProbeability> describe_layers(torch::nn::Module& model);

}  // namespace neuronmap::detail
