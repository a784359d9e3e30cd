// What every kind of probe set (ModuleProbes: op callbacks; ScriptProbes: an inserted graph op) shares
// with the callbacks and gradient hooks it installs: the sink, the counters, and the lifetime
// handshake that lets the probe set's destructor know no callback still uses the sink, and the
// counters it reports. Also what both kinds check of the layer names they are given.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace at {
class Tensor;
}

namespace neuronmap::detail {

class CaptureSink;

/// Owned by a shared_ptr (make_shared): held by the probe set and by the tables its callbacks read,
/// weakly by gradient hooks. A callback brackets every use of the sink with acquire()/release(); the
/// owner's destructor sets `live` to false and then waits until nothing is in flight (wait_idle), so
/// that once it returns the sink is not called again.
struct ProbeCore : std::enable_shared_from_this<ProbeCore> {
  virtual ~ProbeCore() = default;
  std::shared_ptr<CaptureSink> sink;
  bool gradients = false;  ///< hook dLoss/dOutput of captured outputs that autograd records
  std::atomic<bool> live{true};
  std::atomic<std::int64_t> in_flight{0};
  std::atomic<std::uint64_t> captured{0};
  std::atomic<std::uint64_t> gradients_captured{0};
  std::atomic<std::uint64_t> errors{0};
  mutable std::mutex error_mutex;
  std::string last_error;

  /// Counts a failure caught inside a callback and keeps its message (dropped if it cannot be copied).
  void record_error(const char* what) noexcept;
  void record_error(const std::string& what) noexcept { record_error(what.c_str()); }
  std::string last_error_copy() const;

  /// Pairs with the owner's destructor: either this sees live == false (and returns false), or the
  /// destructor sees in_flight > 0 and waits for the matching release().
  bool acquire() noexcept {
    in_flight.fetch_add(1);
    if (live.load()) return true;
    in_flight.fetch_sub(1);
    return false;
  }
  void release() noexcept { in_flight.fetch_sub(1); }

  /// Waits until nothing is in flight, at most `limit` (none: as long as it takes). True when idle.
  bool wait_idle(std::optional<std::chrono::steady_clock::duration> limit) const noexcept;
};

/// Hands `output` to the sink once per probe index in `probes` (counted in `captured`), then, when the
/// core wants gradients and autograd records `output`, hooks it (hook_gradient). Call it between
/// acquire() and release(), with RecordFunction recording off (the sink's ops must not be seen).
void deliver_output(ProbeCore& core, const std::vector<int>& probes, const std::string& name,
                    const at::Tensor& output);

/// Hands dLoss/d`output` to sink->on_gradient for each of `probes` when backward reaches it. The hook
/// holds the core weakly and an alias of the output (no copy); if the output was modified in place
/// after the forward (its version moved), activation x gradient would be wrong, so that gradient is
/// skipped and counted as an error naming `name`.
void hook_gradient(ProbeCore& core, const std::vector<int>& probes, const std::string& name,
                   const at::Tensor& output);

/// What attach() requires of its layer list, whatever the model: at least one name, none twice.
/// Throws UsageError.
void check_layer_names(const std::vector<std::string>& layers);

/// Levenshtein distance, for the closest names in LayerNotFound messages.
std::size_t edit_distance(const std::string& a, const std::string& b);

/// What every kind of probe set reports about its callbacks, read from its ProbeCore.
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

}  // namespace neuronmap::detail
