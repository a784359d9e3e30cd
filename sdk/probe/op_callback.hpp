// The one global RecordFunction callback that every ModuleProbes shares, so that forwards on any thread
// are seen: it matches each outermost op against the tracked modules of the enabled probe sets and
// hands the outputs it recognises to their sinks. Switched off while no probe set is enabled.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "neuronmap/fwd.hpp"
#include "probe/module_resolver.hpp"
#include "probe/probe_core.hpp"

namespace neuronmap::detail {

/// A ProbeCore with the identity the callback's tables are registered under.
struct ModuleProbeCore : ProbeCore {
  std::uint64_t id = 0;  ///< set by add_callback_user
};

/// Counts one more probe set that may use the callback (installing it, disabled, for the first) and
/// gives `core` its id. Throws what addGlobalCallback throws.
void add_callback_user(ModuleProbeCore& core);

/// Unpublishes `core`'s table and counts one user less (removing the callback after the last). An
/// end callback may still run on another thread afterwards: wait on the core before dropping the sink.
void remove_callback_user(const ModuleProbeCore& core);

/// Publishes a table of `tracked` for the callback (`on`), or withdraws it. `modules` is parallel to
/// `tracked`: the modules found by storage (null for chained ones), whose parameter storages are read
/// now (a model.to(...) after attach replaces them). Attention modules are given too. Throws on allocation failure.
void publish_callback_table(const std::shared_ptr<ModuleProbeCore>& core,
                            const std::shared_ptr<const std::vector<TrackedModule>>& tracked,
                            const std::vector<std::shared_ptr<torch::nn::Module>>& modules, bool on);

/// Whether the calling thread is inside an op this probe set matched (its destructor must not wait
/// for itself).
bool inside_callback_of(const ModuleProbeCore& core) noexcept;

}  // namespace neuronmap::detail
