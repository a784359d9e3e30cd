// What the session needs from a set of probes, whatever kind of model they sit on (C++ frontend
// modules, TorchScript modules, Python modules): the targets, and a switch.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "probe/sink.hpp"

namespace neuronmap::detail {

class ProbeSet {
 public:
  virtual ~ProbeSet() = default;
  virtual const std::vector<ProbeTarget>& targets() const noexcept = 0;
  /// Switches capture on or off. Safe from any thread; off must cost ~nothing per op.
  virtual void enable(bool on) noexcept = 0;
};

/// Adapts any probe class with targets()/enable() (e.g. ModuleProbes) to ProbeSet.
template <typename Probes>
class ProbeSetOf final : public ProbeSet {
 public:
  template <typename... Args>
  explicit ProbeSetOf(Args&&... args) : probes_(std::forward<Args>(args)...) {}
  const std::vector<ProbeTarget>& targets() const noexcept override { return probes_.targets(); }
  void enable(bool on) noexcept override { probes_.enable(on); }
  Probes& get() noexcept { return probes_; }

 private:
  Probes probes_;
};

/// Builds the probes of a session, given the sink they must feed. Throws LayerNotFound etc.
using ProbeFactory = std::function<std::unique_ptr<ProbeSet>(std::shared_ptr<CaptureSink>)>;

}  // namespace neuronmap::detail
