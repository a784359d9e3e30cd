// The snapshot builder: from one sealed window (stream/sealed_window.hpp) and the learning history of
// the session's earlier snapshots to the Snapshot the run file stores. A plain function, no threads or
// queues of its own: the engine's snapshot thread calls it once per snapshot epoch, and so can a test.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "learning/learning.hpp"
#include "neuronmap/options.hpp"
#include "neuronmap/snapshot.hpp"
#include "stream/accumulator.hpp"
#include "stream/sealed_window.hpp"

namespace neuronmap::detail {

/// What one snapshot leaves for the next: per-layer lineages and events, the reference rows (for
/// cka_previous) and the previous snapshot's epoch, loss and cka_previous (for the phase). Not
/// thread-safe: one per session, used by one thread.
struct LearningHistory {
  explicit LearningHistory(const std::vector<std::string>& layer_names);

  std::vector<learning::LayerLearning> layers;  ///< per layer; names the layers
  std::vector<ReferenceRows> previous_reference;
  std::optional<Snapshot> previous;  ///< epoch, loss and per-layer cka_previous only; none before the first
};

/// A built snapshot, and what went wrong in parts that were left empty (learning measures of a layer);
/// the engine records those as the session's errors and still writes the snapshot.
struct BuiltSnapshot {
  Snapshot snapshot;
  std::vector<std::string> problems;
};

/// Analyses every layer of `window` (statistics, correlation, groups; the layers in parallel in the
/// caller's TBB arena), attaches each reservoir row's tag and loss, then runs the learning analysis
/// against `history` and advances it. `window.layers` must hold one accumulator per layer of
/// `history` (std::invalid_argument otherwise). An analysis failure throws; `history` is then unchanged.
BuiltSnapshot build_snapshot(SealedWindow&& window, LearningHistory& history, const Options& options);

/// The tag and per-sample loss of each reservoir row of `layer` that rank `rank` of `world` captured,
/// from that rank's forward passes in order: row r of a layer's n-th batch (R rows) belongs to sample
/// r * B / R of the n-th forward pass (B samples), which also covers per-token rows. Sample ids carry
/// the global ordinal `n * world + rank`. Rows without an observation are left out.
std::unordered_map<std::int64_t, Observed> observe_reservoir_rows(const LayerAccumulator& layer,
                                                                  const std::vector<ForwardObservation>& forwards,
                                                                  int rank = 0, int world = 1);

}  // namespace neuronmap::detail
