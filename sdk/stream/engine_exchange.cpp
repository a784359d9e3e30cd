// Distributed snapshots (Options::communicator): this rank's part of a captured window, gathered to
// rank 0 and merged there.
#include <fmt/format.h>

#include "stream/engine_state.hpp"
#include "stream/exchange.hpp"

namespace neuronmap::detail {

// A distributed snapshot, on the training thread, so that every rank issues its collectives in the
// same order as the training's own: wait for this rank's workers, merge them, look up the tags and
// losses of this rank's reservoir rows (the observations stay in this process), gather every rank's
// part to rank 0 and merge there in rank order. True on rank 0 when `job` holds the merged window;
// false on the other ranks (their part is sent) and after a failure (recorded; no later snapshot is
// attempted).
bool Engine::State::exchange(Window* window, SnapshotJob& job) {
  if (distributed_failed) {
    if (window != nullptr) discard_window(window);
    return false;
  }
  RankWindow part;
  part.layers.resize(layers.size());
  part.counters.resize(layers.size());
  part.observed.resize(layers.size());
  part.losses = job.sealed.losses;
  if (window != nullptr) {
    window->wait_until_processed();
    window->merge(part.layers, part.counters);
    std::lock_guard<std::mutex> lock(window->observations_mutex);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      part.observed[l] = observe_reservoir_rows(part.layers[l], window->observations, rank, world);
    }
  }
  std::optional<RankWindow> merged;
  try {
    merged = gather_windows(*communicator, std::move(part), options.reservoir_size(), options.seed());
  } catch (const std::exception& e) {
    distributed_failed = true;
    record_error(fmt::format("distributed snapshot at epoch {} ({}): {}; this and later snapshots are not written, "
                             "the run file keeps the earlier ones",
                             job.sealed.epoch, communicator->describe(), e.what()));
    return false;
  }
  if (!merged) {
    written.fetch_add(1, std::memory_order_release);  // this rank's part of a snapshot is delivered
    return false;
  }
  job.sealed.losses = std::move(merged->losses);
  if (!job.sealed.losses.empty()) job.sealed.loss = job.sealed.losses.back();
  job.sealed.layers = std::move(merged->layers);
  job.sealed.counters = std::move(merged->counters);
  job.sealed.observed = std::move(merged->observed);
  job.window = nullptr;  // its accumulators are merged into job.sealed
  return true;
}

}  // namespace neuronmap::detail
