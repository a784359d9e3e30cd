// A capture window: one captured epoch as the engine's producers, workers and snapshot thread share it.
//
// Producers (probe callbacks) enter a window with `active` raised, so that sealing can wait until no
// producer is inside before it reads `submitted`; the snapshot thread then waits until the workers
// have `processed` that many batches, after which the per-worker accumulators of the window are no
// longer touched and can be merged without locks.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "neuronmap/snapshot.hpp"
#include "stream/accumulator.hpp"
#include "stream/overhead_budget.hpp"
#include "stream/sealed_window.hpp"

namespace neuronmap::detail {

struct AtomicCounters {
  std::atomic<std::int64_t> captured_batches{0}, dropped_batches{0}, skipped_batches{0}, budget_skipped_batches{0},
      errors{0};
};

struct Window {
  Window(std::size_t layers, std::size_t workers)
      : n_layers(layers),
        ordinals(new std::atomic<std::int64_t>[layers]),
        counters(new AtomicCounters[layers]),
        forward_captured(new std::atomic<bool>[layers]),
        accumulators(workers, std::vector<LayerAccumulator>(layers)) {
    for (std::size_t i = 0; i < layers; ++i) ordinals[i] = 0;
    for (std::size_t i = 0; i < layers; ++i) forward_captured[i] = true;
    std::fill(std::begin(budget_decisions), std::end(budget_decisions), -1);
  }

  /// Returns once no producer is inside and the workers have processed every submitted batch.
  void wait_until_processed() const {
    while (active.load() != 0) std::this_thread::yield();
    const std::int64_t batches = submitted.load(std::memory_order_acquire);
    while (processed.load(std::memory_order_acquire) < batches) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  /// After wait_until_processed: merges the per-worker accumulators (freeing them) into `merged`, and
  /// the window's counters into `merged_counters`, one per layer.
  void merge(std::vector<LayerAccumulator>& merged, std::vector<Counters>& merged_counters) {
    merged.resize(n_layers);
    merged_counters.resize(n_layers);
    for (auto& per_worker : accumulators) {
      for (std::size_t l = 0; l < n_layers; ++l) merge_accumulator(merged[l], std::move(per_worker[l]));
      per_worker.clear();
      per_worker.shrink_to_fit();
    }
    for (std::size_t l = 0; l < n_layers; ++l) {
      auto& c = merged_counters[l];
      c.captured_batches = counters[l].captured_batches.load();
      c.dropped_batches = counters[l].dropped_batches.load();
      c.skipped_batches = counters[l].skipped_batches.load();
      c.budget_skipped_batches = counters[l].budget_skipped_batches.load();
      c.errors = counters[l].errors.load();
      c.rows = merged[l].rows;
      c.nonfinite_rows = merged[l].nonfinite_rows;
    }
  }

  const std::size_t n_layers;
  std::atomic<bool> closed{false};
  std::atomic<std::int64_t> active{0};
  std::atomic<std::int64_t> submitted{0};
  std::atomic<std::int64_t> processed{0};
  std::unique_ptr<std::atomic<std::int64_t>[]> ordinals;    // batches begun per layer
  std::unique_ptr<AtomicCounters[]> counters;                // producer-side counters per layer
  // Options::overhead_budget: the recent forward passes' decisions (OverheadBudget::capture) and,
  // per layer, whether its last forward pass was captured (its gradients follow it).
  std::int64_t budget_decisions[OverheadBudget::kDecisionSlots];
  std::unique_ptr<std::atomic<bool>[]> forward_captured;
  std::vector<std::vector<LayerAccumulator>> accumulators;   // [worker][layer], each touched by one worker
  std::mutex observations_mutex;
  std::vector<ForwardObservation> observations;  // one per forward pass, in order
};

}  // namespace neuronmap::detail
