// The engine between the probes and the run file, free of LibTorch: a bounded queue of pooled
// batches, worker threads that accumulate per-layer statistics per capture window, and one snapshot
// thread that seals windows, has the snapshot builder (snapshot/builder.hpp) make their snapshots and
// appends them to the run file.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "neuronmap/options.hpp"
#include "neuronmap/snapshot.hpp"

namespace neuronmap::detail {

struct LayerAccumulator;

/// One captured batch on its way to a worker: rows x cols float32, row-major, in a pooled buffer.
struct Batch {
  int layer = -1;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t ordinal = 0;                ///< this layer's n-th batch in the window (one per forward)
  std::vector<float> values;               ///< capacity is kept when the batch returns to the pool
  std::vector<std::int64_t> output_shape;  ///< the raw output's shape
  bool gradient = false;                   ///< rows x (2 * neurons): |gradient| then activation x gradient
  bool attention = false;                  ///< attention weights, rows (sample, query, key) x heads
  bool large = false;  ///< one of a layer's `workers` large buffers (Route::queue_large), for good
  /// Statistics already reduced on the output's device (Options::reduce_on_device, session/
  /// device_reduction.hpp): the worker merges them into its accumulator instead of adding rows.
  std::shared_ptr<LayerAccumulator> partial;
  struct Window* window = nullptr;
  std::chrono::steady_clock::time_point begun{};  ///< when begin_batch granted it (overhead budget only)
};

class Engine;

/// A producer's claim on one batch slot; obtained from Engine::begin_batch on the probing thread.
/// Fill batch->values (rows * cols floats, use reserve_values), then Engine::submit. Destroying an
/// unsubmitted ticket gives the slot back.
class BatchTicket {
 public:
  BatchTicket() = default;
  BatchTicket(BatchTicket&& other) noexcept;
  BatchTicket& operator=(BatchTicket&&) = delete;
  ~BatchTicket();
  explicit operator bool() const noexcept { return batch_ != nullptr; }
  Batch* batch() const noexcept { return batch_; }
  /// The capture window the slot belongs to (compare only: a batch of another window is stale).
  const void* window() const noexcept;
  /// Sizes the buffer for rows x cols (keeps capacity, so the steady state does not allocate).
  float* reserve_values(std::int64_t rows, std::int64_t cols);

 private:
  friend class Engine;
  Engine* engine_ = nullptr;
  Batch* batch_ = nullptr;
};

class Engine {
 public:
  /// `set_capture` switches the probes on and off (capture only in epochs that become snapshots).
  struct Hooks {
    std::function<void(bool)> set_capture;
  };

  /// Creates the run file on the calling thread, so that file errors surface at attach (FileError).
  Engine(std::vector<neuronmap::LayerInfo> layers, Options options, RunInfo info, Hooks hooks);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Called on probing threads; these never throw.
  /// Where a batch's values go:
  /// - queue: through the queue to a worker, in a buffer of the shared pool;
  /// - queue_large: the same in one of the layer's own `workers` buffers, for outputs much larger than
  ///   the rest (attention weights [B, H, T, S]): while the workers hold all of them the probe waits
  ///   for one (Overflow::block) or drops the batch (drop_newest), so such a layer keeps at most one
  ///   batch per worker in memory instead of one per queue slot;
  /// - probe: reduced by the probe itself (consume()); a full queue does not drop it.
  enum class Route { queue, queue_large, probe };
  /// A slot for layer `layer`'s next batch, or an empty ticket if nothing should be captured now
  /// (no open window, max_batches reached, queue full under drop_newest: each counted).
  BatchTicket begin_batch(int layer, bool gradient = false, Route route = Route::queue) noexcept;
  /// Hands a filled batch to the workers. Checks the width against the layer's first capture.
  void submit(BatchTicket ticket) noexcept;
  /// Ends a batch the probe reduced itself (on the output's device): the slot goes back, and its time
  /// counts as the probe's cost for the overhead budget. Its statistics reach the workers later in
  /// one partial batch (begin_partial).
  void consume(BatchTicket ticket) noexcept;
  /// A slot in the open window for a partial batch (Batch::partial: the statistics of batches the probe
  /// reduced and consume()d), not counted as a captured batch; empty when no window is open. Under
  /// either Overflow policy a partial waits for queue space: it carries many batches and is never dropped.
  BatchTicket begin_partial(int layer) noexcept;
  /// Records a failure inside a probe (counted; the first message kept for last_error()).
  void report_probe_error(int layer, const std::string& message) noexcept;

  // Called on the session's (training) thread.
  /// Per-sample loss and tags of the forward pass that just ran (the n-th call in a window belongs
  /// to each layer's n-th batch). Either may be empty. Ignored outside captured epochs.
  void observe(std::vector<float> per_sample_loss, std::vector<std::int32_t> tags);
  /// Reference mode: while on, probe outputs go to the reference store, not the statistics.
  void set_reference_mode(bool on) noexcept;
  bool reference_mode() const noexcept;
  /// Called by the sink in reference mode: one layer's rows of the reference batch.
  void add_reference_rows(int layer, const float* rows, std::int64_t n_rows, std::int64_t cols) noexcept;
  /// A function that runs the model on a fixed reference batch (no grad); run at every snapshot epoch.
  void set_reference_source(std::function<void()> forward);
  /// Ends epoch `epoch` (epochs must increase: UsageError otherwise, and after close()). Capture stops,
  /// and starts again if `epoch + 1` is a snapshot epoch. At a snapshot epoch (a multiple of `every`)
  /// the snapshot is queued for the snapshot thread, which analyses it and writes it; end_epoch never
  /// waits for that work (flush() does). It returns at once except at a snapshot epoch:
  /// - in a distributed session (Options::communicator), it first waits until this rank's workers have
  ///   processed every batch of the epoch, then for the gather of every rank's part to rank 0 (as long
  ///   as the slowest rank, or the group's timeout when a rank is gone; rank 0 also merges the parts).
  ///   Ranks other than 0 return after the gather. Once a gather has failed, later calls return at
  ///   once and no later epoch is captured;
  /// - with a reference source (set_reference_source) it runs that forward pass, on this thread, before
  ///   it returns (on rank 0 only in a distributed session).
  void end_epoch(std::int64_t epoch, double loss);
  /// Waits until the snapshot thread has written (or failed) every snapshot queued so far.
  void flush();
  void close() noexcept;
  bool capturing() const noexcept;

  Counters counters() const;
  std::int64_t snapshots_written() const noexcept;
  std::string last_error() const;
  const std::vector<neuronmap::LayerInfo>& layers() const noexcept;
  const Options& options() const noexcept;
  void set_worker_delay(double seconds) noexcept;

 private:
  friend class BatchTicket;
  struct State;
  void release(Batch* batch) noexcept;
  std::unique_ptr<State> state_;
};

}  // namespace neuronmap::detail
