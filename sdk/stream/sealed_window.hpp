// What the stream hands to the snapshot builder (snapshot/builder.hpp): one captured epoch whose
// workers are done, their accumulators merged, with the observations and reference rows that go with it.
#pragma once

#include <cstdint>
#include <limits>
#include <unordered_map>
#include <vector>

#include "neuronmap/snapshot.hpp"
#include "stream/accumulator.hpp"

namespace neuronmap::detail {

/// Per-sample loss and tags of one forward pass (Engine::observe); either may be empty.
struct ForwardObservation {
  std::vector<float> loss;
  std::vector<std::int32_t> tags;
};

/// The tag and per-sample loss of one reservoir row.
struct Observed {
  std::int32_t tag = -1;
  float loss = std::numeric_limits<float>::quiet_NaN();
};

/// A layer's rows of the reference batch (Session::set_reference), captured at a snapshot epoch.
struct ReferenceRows {
  std::int64_t cols = 0;
  std::vector<float> rows;
};

/// One snapshot epoch's data, per layer in the session's layer order.
struct SealedWindow {
  std::int64_t epoch = 0;
  double loss = 0.0;
  double timestamp = 0.0;                 ///< seconds since the Unix epoch (Snapshot::timestamp)
  std::vector<std::int64_t> loss_epochs;  ///< every epoch since the previous snapshot
  std::vector<double> losses;             ///< their losses

  std::vector<LayerAccumulator> layers;  ///< merged over workers (and ranks); sample ids as sample_id()
  std::vector<Counters> counters;        ///< the window's counters
  /// This process's forward passes in order: the n-th belongs to each layer's n-th batch. Empty for a
  /// distributed window, whose rows every rank looked up before sending them (`observed`).
  std::vector<ForwardObservation> observations;
  /// Per layer (or empty): reservoir sample id -> observation, already looked up.
  std::vector<std::unordered_map<std::int64_t, Observed>> observed;
  std::vector<ReferenceRows> reference;  ///< per layer; empty without a reference batch
};

}  // namespace neuronmap::detail
