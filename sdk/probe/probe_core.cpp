// The part of a probe set its callbacks share: see probe_core.hpp.
#include "probe/probe_core.hpp"

#include <ATen/record_function.h>
#include <torch/torch.h>

#include <algorithm>
#include <thread>

#include "neuronmap/errors.hpp"
#include "probe/sink.hpp"

namespace neuronmap::detail {

void ProbeCore::record_error(const char* what) noexcept {
  errors.fetch_add(1, std::memory_order_relaxed);
  try {
    std::lock_guard<std::mutex> lock(error_mutex);
    last_error = what;
  } catch (...) {
  }
}

std::string ProbeCore::last_error_copy() const {
  std::lock_guard<std::mutex> lock(error_mutex);
  return last_error;
}

bool ProbeCore::wait_idle(std::optional<std::chrono::steady_clock::duration> limit) const noexcept {
  const auto start = std::chrono::steady_clock::now();
  while (in_flight.load() > 0) {
    if (limit && std::chrono::steady_clock::now() - start >= *limit) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return true;
}

std::uint64_t ProbeCounters::captured() const noexcept { return counted_->captured.load(); }
std::uint64_t ProbeCounters::gradients_captured() const noexcept { return counted_->gradients_captured.load(); }
std::uint64_t ProbeCounters::errors() const noexcept { return counted_->errors.load(); }
std::string ProbeCounters::last_error() const { return counted_->last_error_copy(); }

void deliver_output(ProbeCore& core, const std::vector<int>& probes, const std::string& name,
                    const at::Tensor& output) {
  for (int probe : probes) {
    core.sink->on_output(probe, output);
    core.captured.fetch_add(1, std::memory_order_relaxed);
  }
  if (core.gradients && !probes.empty() && output.requires_grad() && at::GradMode::is_enabled()) {
    hook_gradient(core, probes, name, output);
  }
}

void hook_gradient(ProbeCore& core, const std::vector<int>& probes, const std::string& name,
                   const at::Tensor& output) {
  std::weak_ptr<ProbeCore> weak = core.weak_from_this();
  at::Tensor activation = output.detach();  // an alias, no copy: checked by version below
  const auto version = activation._version();
  output.register_hook([weak, probes, name, activation, version](const at::TensorBase& grad_base) {
    const auto core = weak.lock();
    if (!core || !grad_base.defined() || !core->acquire()) return;
    try {
      if (activation._version() != version) {
        core->record_error("gradient probe '" + name +
                           "': its output was modified in place after the forward; gradient statistics of "
                           "that batch skipped");
      } else {
        at::RecordFunctionGuard no_recording(false);
        const at::Tensor grad(grad_base);
        for (int probe : probes) {
          core->sink->on_gradient(probe, activation, grad);
          core->gradients_captured.fetch_add(1, std::memory_order_relaxed);
        }
      }
    } catch (...) {
      core->record_error("unknown exception in gradient probe");
    }
    core->release();
  });
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

void check_layer_names(const std::vector<std::string>& layers) {
  if (layers.empty()) throw UsageError("attach() needs at least one layer name");
  for (std::size_t i = 0; i < layers.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (layers[i] == layers[j]) throw UsageError("attach(): layer '" + layers[i] + "' is listed twice");
    }
  }
}

}  // namespace neuronmap::detail
