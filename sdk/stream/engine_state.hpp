// The engine's shared state (stream/engine.hpp's Engine::State), for the engine's own source files:
// engine.cpp (producers, workers, snapshot thread) and engine_exchange.cpp (distributed snapshots).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <tbb/concurrent_queue.h>
#include <tbb/task_arena.h>

#include "snapshot/builder.hpp"
#include "store/run_file.hpp"
#include "stream/engine.hpp"
#include "stream/overhead_budget.hpp"
#include "stream/sealed_window.hpp"
#include "stream/window.hpp"

namespace neuronmap::detail {

// Work for the snapshot thread, in the order of end_epoch's calls.
struct SnapshotJob {
  // To merge into `sealed` once its workers are done; null when nothing was captured, or when
  // `sealed` already holds the merged window (distributed, on rank 0).
  Window* window = nullptr;
  bool discard = false;  // only wait for the workers, then free the window's accumulators
  SealedWindow sealed;   // epoch, losses and reference rows at least
};

struct Engine::State {
  std::vector<neuronmap::LayerInfo> layers;
  Options options;
  Hooks hooks;
  std::unique_ptr<RunWriter> writer;

  tbb::concurrent_bounded_queue<Batch*> queue;
  tbb::concurrent_queue<Batch*> pool;
  // Per layer, Route::queue_large's buffers: `workers` of them each, made at construction.
  std::vector<std::unique_ptr<tbb::concurrent_bounded_queue<Batch*>>> large_pools;
  std::vector<std::thread> workers;
  std::atomic<double> worker_delay{0.0};
  OverheadBudget budget;
  // Options::worker_priority(idle): whether the workers should be idle-class now (engine.cpp).
  bool idle_priority = false;
  std::atomic<bool> workers_idle{false};

  // Windows stay allocated until the engine dies: a late producer may still hold a pointer to a
  // sealed window (it only touches the atomics, sees `closed` and leaves). Sealed windows free
  // their accumulators.
  std::mutex windows_mutex;
  std::vector<std::unique_ptr<Window>> windows;
  std::atomic<Window*> current{nullptr};

  std::unique_ptr<std::atomic<std::int64_t>[]> widths;  // per layer: neurons at first capture, -1 = unknown
  std::unique_ptr<AtomicCounters[]> totals;              // per layer, whole session
  std::atomic<std::int64_t> rows_total{0}, nonfinite_total{0};

  std::thread snapshot_thread;
  std::mutex jobs_mutex;
  std::condition_variable jobs_changed;
  std::deque<SnapshotJob> jobs;
  bool job_running = false;
  bool stopping = false;
  std::atomic<std::int64_t> written{0};

  mutable std::mutex error_mutex;
  std::string first_error;

  std::optional<std::int64_t> last_epoch;
  std::vector<std::int64_t> pending_loss_epochs;
  std::vector<double> pending_losses;
  std::atomic<bool> reference_on{false};
  std::function<void()> reference_source;
  std::mutex reference_mutex;
  std::vector<ReferenceRows> reference;

  std::optional<LearningHistory> history;  // the snapshot thread's only
  bool closed = false;
  tbb::task_arena arena;

  // Distributed sessions (Options::communicator): this process's rank in the group. Reservoir sample
  // ids use the global ordinal `ordinal * world + rank`, as if rank r fed every world-th batch.
  std::shared_ptr<Communicator> communicator;
  int rank = 0;
  int world = 1;
  bool distributed_failed = false;  // a collective failed: the group is unusable, no more snapshots

  // Buffers still pooled (close() frees them; this covers a constructor that threw after making them).
  ~State() {
    Batch* batch = nullptr;
    while (pool.try_pop(batch)) delete batch;
    for (auto& large : large_pools) {
      while (large->try_pop(batch)) delete batch;
    }
  }

  // A producer entering the open window: it is counted in `active` (sealing waits for it) and
  // returned, or null (no window, or it closed) with nothing counted.
  Window* enter_open_window() noexcept {
    Window* window = current.load(std::memory_order_acquire);
    if (window == nullptr) return nullptr;
    window->active.fetch_add(1);
    if (window->closed.load()) {
      window->active.fetch_sub(1);
      return nullptr;
    }
    return window;
  }

  void open_window_if_captured(std::int64_t epoch);
  Window* close_window();
  void discard_window(Window* window);
  void make_snapshot(SnapshotJob& job);
  bool exchange(Window* window, SnapshotJob& job);

  void record_error(const std::string& message) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (first_error.empty()) first_error = message;
  }
};

}  // namespace neuronmap::detail
