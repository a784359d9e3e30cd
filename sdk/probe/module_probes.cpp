// ModuleProbes: resolves the probed names (module_resolver.hpp) and registers the result with the
// shared op callback (op_callback.hpp); describe_layers asks the same resolver about every submodule.
#include "probe/module_probes.hpp"

#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <mutex>

#include "neuronmap/errors.hpp"
#include "probe/module_resolver.hpp"
#include "probe/op_callback.hpp"

namespace neuronmap::detail {

struct ModuleProbes::State {
  std::shared_ptr<ModuleProbeCore> core;
  std::shared_ptr<const std::vector<TrackedModule>> tracked;
  std::vector<std::shared_ptr<torch::nn::Module>> modules;  // parallel to tracked: those found by storage
  std::vector<ProbeTarget> targets;
  std::atomic<bool> on{false};
  std::mutex enable_mutex;  // one enable() at a time per probe set
};

ModuleProbes::ModuleProbes(torch::nn::Module& model, const std::vector<std::string>& names,
                           std::shared_ptr<CaptureSink> sink, bool gradients)
    : state_(std::make_unique<State>()) {
  if (!sink) throw UsageError("ModuleProbes needs a sink");
  ModuleResolver resolver(model);
  for (std::size_t i = 0; i < names.size(); ++i) {
    const auto module = resolver.find(names[i]);
    const ResolvedModule r = resolver.resolve(names[i]);
    resolver.tracked()[r.tracked].probe_indices.push_back(static_cast<int>(i));
    state_->targets.push_back(ProbeTarget{names[i], module->name(), r.layout});
  }
  for (auto& t : resolver.tracked()) {
    std::shared_ptr<torch::nn::Module> module = std::move(t.module);  // the callbacks must not keep it alive
    state_->modules.push_back(t.by_storage || t.attention_heads > 0 ? std::move(module) : nullptr);
  }
  state_->tracked = std::make_shared<const std::vector<TrackedModule>>(std::move(resolver.tracked()));
  state_->core = std::make_shared<ModuleProbeCore>();
  state_->core->sink = std::move(sink);
  state_->core->gradients = gradients;
  counted_ = state_->core;
  add_callback_user(*state_->core);
}

ModuleProbes::~ModuleProbes() {
  ModuleProbeCore& core = *state_->core;
  core.live.store(false);
  remove_callback_user(core);
  // Wait for ops already matched on other threads, so that the sink is never called after this
  // returns; skip it when called from inside one of our own callbacks (it would wait for itself).
  if (!inside_callback_of(core)) core.wait_idle(std::chrono::seconds(10));
  if (core.in_flight.load() == 0) core.sink.reset();  // stale per-thread table lists keep only the table
}

const std::vector<ProbeTarget>& ModuleProbes::targets() const noexcept { return state_->targets; }

void ModuleProbes::enable(bool on) noexcept {
  try {
    std::lock_guard<std::mutex> enable_lock(state_->enable_mutex);
    // Re-read parameter storages on every enable: model.to(...) after attach replaces them.
    publish_callback_table(state_->core, state_->tracked, state_->modules, on);
    state_->on.store(on);
  } catch (const std::exception& e) {
    state_->core->record_error(e.what());
  } catch (...) {
    state_->core->record_error("unknown exception in ModuleProbes::enable");
  }
}

bool ModuleProbes::enabled() const noexcept { return state_->on.load(); }

std::vector<std::string> module_names(torch::nn::Module& model) {
  return model.named_modules(/*name_prefix=*/"", /*include_self=*/false).keys();
}

std::vector<ModuleProbeability> describe_layers(torch::nn::Module& model) {
  ModuleResolver resolver(model);
  std::vector<ModuleProbeability> out;
  for (const auto& item : model.named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    ModuleProbeability info;
    info.name = item.key();
    info.module_type = item.value()->name();
    for (const auto& p : item.value()->parameters(/*recurse=*/true)) info.parameter_count += p.numel();
    try {
      info.layout = resolver.resolve(item.key()).layout;
      info.probeable = true;
    } catch (const UnsupportedModule& e) {
      info.why_not = e.what();
    }
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace neuronmap::detail
