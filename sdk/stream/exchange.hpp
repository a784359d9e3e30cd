// A distributed session's snapshot: each rank's accumulators of the window, encoded as bytes for the
// process group's gather, decoded on rank 0 and merged in rank order (docs/DISTRIBUTED.md).
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "neuronmap/detail/communicator.hpp"
#include "neuronmap/snapshot.hpp"
#include "stream/accumulator.hpp"
#include "stream/sealed_window.hpp"

namespace neuronmap::detail {

/// One rank's part of a snapshot.
struct RankWindow {
  std::vector<LayerAccumulator> layers;  ///< per layer, the rank's workers already merged
  std::vector<Counters> counters;        ///< per layer, the window's counters
  std::vector<double> losses;            ///< the losses given to end_epoch since the previous snapshot
  int loss_ranks = 1;                    ///< ranks summed into `losses` (those that gave as many epochs)
  std::vector<std::unordered_map<std::int64_t, Observed>> observed;  ///< per layer: reservoir id -> observation,
                                                                     ///< looked up on the rank that captured the row
};

/// Native byte order: the ranks of one group run the same build on the same architecture.
std::vector<std::uint8_t> encode(const RankWindow& part);
/// Throws std::runtime_error on a malformed buffer. `reservoir_size` and `seed` rebuild the reservoirs.
RankWindow decode(const std::vector<std::uint8_t>& bytes, std::int64_t reservoir_size, std::uint64_t seed);
/// Adds `other` to `into` (rank 0 calls it for ranks 1, 2, ... in order): the accumulators with
/// merge_accumulator, counters and losses summed, observations united.
void merge_into(RankWindow& into, RankWindow&& other);

/// Every rank calls it with its part: the parts are gathered to rank 0 and merged there in rank
/// order, and each merged loss divided by the ranks that gave it. Rank 0 gets the merged window, the
/// other ranks std::nullopt (their part is sent). Throws what the communicator throws, and
/// std::runtime_error on a malformed part.
std::optional<RankWindow> gather_windows(Communicator& communicator, RankWindow&& part, std::int64_t reservoir_size,
                                         std::uint64_t seed);

}  // namespace neuronmap::detail
