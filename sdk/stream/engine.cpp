// The engine: bounded queue → workers → per-window accumulators → snapshot thread → run file.
//
// A *window* is one captured epoch. Producers (probe callbacks) enter a window with `active`
// raised, so that sealing can wait until no producer is inside before it reads `submitted`; the
// snapshot thread then waits until the workers have `processed` that many batches, after which the
// per-worker accumulators of the window are no longer touched and can be merged without locks.
#include "stream/engine.hpp"

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>
#include <tbb/concurrent_queue.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include "analysis/correlation.hpp"
#include "analysis/grouping.hpp"
#include "analysis/moments.hpp"
#include "learning/learning.hpp"
#include "neuronmap/errors.hpp"
#include "store/run_file.hpp"
#include "stream/accumulator.hpp"
#include "stream/exchange.hpp"
#include "stream/reservoir.hpp"

namespace neuronmap::detail {
namespace {

using Clock = std::chrono::steady_clock;

struct AtomicCounters {
  std::atomic<std::int64_t> captured_batches{0}, dropped_batches{0}, skipped_batches{0}, errors{0};
};

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

struct Window {
  Window(std::size_t layers, std::size_t workers)
      : ordinals(new std::atomic<std::int64_t>[layers]),
        counters(new AtomicCounters[layers]),
        accumulators(workers, std::vector<LayerAccumulator>(layers)) {
    for (std::size_t i = 0; i < layers; ++i) ordinals[i] = 0;
  }
  std::atomic<bool> closed{false};
  std::atomic<std::int64_t> active{0};
  std::atomic<std::int64_t> submitted{0};
  std::atomic<std::int64_t> processed{0};
  std::unique_ptr<std::atomic<std::int64_t>[]> ordinals;  // batches begun per layer
  std::unique_ptr<AtomicCounters[]> counters;              // producer-side counters per layer
  std::vector<std::vector<LayerAccumulator>> accumulators; // [worker][layer], each touched by one worker
  struct Observation {
    std::vector<float> loss;
    std::vector<std::int32_t> tags;
  };
  std::mutex observations_mutex;
  std::vector<Observation> observations;  // one per forward pass, in order
};

// A layer's rows of the reference batch (Session::set_reference), captured at a snapshot epoch.
struct ReferenceRows {
  std::int64_t cols = 0;
  std::vector<float> rows;
};

struct SnapshotJob {
  Window* window = nullptr;  // null: an epoch in which nothing was captured
  std::int64_t epoch = 0;
  double loss = 0.0;
  std::vector<std::int64_t> loss_epochs;  // every epoch since the previous snapshot
  std::vector<double> losses;
  std::vector<ReferenceRows> reference;   // per layer; empty without a reference batch
  std::shared_ptr<RankWindow> exchanged;  // distributed, on rank 0: every rank's window, merged
};

struct Engine::State {
  std::vector<neuronmap::LayerInfo> layers;
  Options options;
  Hooks hooks;
  std::unique_ptr<RunWriter> writer;

  tbb::concurrent_bounded_queue<Batch*> queue;
  tbb::concurrent_queue<Batch*> pool;
  std::vector<std::thread> workers;
  std::atomic<double> worker_delay{0.0};

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

  // Learning patterns across snapshots (snapshot thread only).
  std::vector<learning::LayerLearning> layer_learning;
  std::vector<ReferenceRows> previous_reference;  // per layer, at the previous snapshot
  std::optional<Snapshot> previous_light;        // epoch, loss and per-layer cka_previous only
  bool closed = false;
  tbb::task_arena arena;

  // Distributed sessions (Options::communicator): this process's rank in the group. Reservoir sample
  // ids use the global ordinal `ordinal * world + rank`, as if rank r fed every world-th batch.
  std::shared_ptr<Communicator> communicator;
  int rank = 0;
  int world = 1;
  bool distributed_failed = false;  // a collective failed: the group is unusable, no more snapshots

  void open_window_if_captured(std::int64_t epoch);
  Window* close_window();
  void discard_window(Window* window);
  static void wait_until_processed(Window* window);
  void make_snapshot(const SnapshotJob& job);
  void merge_window(Window& window, std::vector<LayerAccumulator>& merged, std::vector<Counters>& counters) const;
  bool exchange(Window* window, SnapshotJob& job);
  void observe_reservoirs(Window& window, RankWindow& part) const;
  void analyse_layer(LayerAccumulator& acc, const std::string& name, LayerSnapshot& out) const;
  void attach_observations(Window& window, const std::vector<LayerAccumulator>& merged, Snapshot& snapshot) const;
  void learn(const SnapshotJob& job, Snapshot& snapshot);

  void record_error(const std::string& message) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (first_error.empty()) first_error = message;
  }
};

// --- BatchTicket ---

BatchTicket::BatchTicket(BatchTicket&& other) noexcept : engine_(other.engine_), batch_(other.batch_) {
  other.engine_ = nullptr;
  other.batch_ = nullptr;
}

BatchTicket::~BatchTicket() {
  if (batch_ != nullptr) {
    Window* window = batch_->window;
    engine_->release(batch_);
    window->active.fetch_sub(1);
  }
}

float* BatchTicket::reserve_values(std::int64_t rows, std::int64_t cols) {
  batch_->rows = rows;
  batch_->cols = cols;
  batch_->values.resize(static_cast<std::size_t>(rows * cols));
  return batch_->values.data();
}

// --- Engine ---

Engine::Engine(std::vector<neuronmap::LayerInfo> layers, Options options, RunInfo info, Hooks hooks)
    : state_(std::make_unique<State>()) {
  auto& s = *state_;
  s.layers = std::move(layers);
  s.options = std::move(options);
  s.hooks = std::move(hooks);
  const auto n_layers = s.layers.size();
  s.widths.reset(new std::atomic<std::int64_t>[n_layers]);
  for (std::size_t i = 0; i < n_layers; ++i) s.widths[i] = -1;
  s.totals.reset(new AtomicCounters[n_layers]);
  s.queue.set_capacity(s.options.queue_capacity());
  s.arena.initialize(s.options.analysis_threads());

  for (const auto& layer : s.layers) s.layer_learning.emplace_back(layer.name);
  s.previous_reference.resize(n_layers);
  s.communicator = s.options.communicator();
  if (s.communicator) {
    s.rank = s.communicator->rank();
    s.world = s.communicator->size();
  }
  // In a distributed session only rank 0 opens the run file.
  if (s.rank == 0) s.writer = std::make_unique<RunWriter>(s.options.file(), info, s.options.overwrite());

  for (int w = 0; w < s.options.workers(); ++w) {
    s.workers.emplace_back([this, w] {
      auto& st = *state_;
      Batch* batch = nullptr;
      for (;;) {
        st.queue.pop(batch);
        if (batch == nullptr) return;  // the stop sentinel, queued after every batch
        const double delay = st.worker_delay.load(std::memory_order_relaxed);
        if (delay > 0) std::this_thread::sleep_for(std::chrono::duration<double>(delay));
        Window* window = batch->window;
        auto& acc = window->accumulators[static_cast<std::size_t>(w)][static_cast<std::size_t>(batch->layer)];
        try {
          if (batch->gradient) {
            const auto neurons = st.widths[static_cast<std::size_t>(batch->layer)].load();
            if (batch->cols == 2 * neurons && batch->rows > 0 && row_is_finite(batch->values.data(), batch->rows * batch->cols)) {
              acc.gradients.add(batch->values.data(), batch->rows, neurons);
            }
            release(batch);
            window->processed.fetch_add(1, std::memory_order_release);
            continue;
          }
          if (st.options.transform()) {
            RowsView view{st.layers[static_cast<std::size_t>(batch->layer)].name, batch->values.data(), batch->rows,
                          batch->cols};
            st.options.transform()(view);
          }
          if (!acc.moments) {
            acc.moments.emplace(batch->cols);
            acc.reservoir = Reservoir(st.options.reservoir_size(), batch->cols, st.options.seed());
          }
          const std::int64_t skipped = acc.moments->add(batch->values.data(), batch->rows);
          if (acc.sum_abs.empty()) acc.sum_abs.assign(static_cast<std::size_t>(batch->cols), 0.0);
          for (std::int64_t r = 0; r < batch->rows; ++r) {
            const float* row = batch->values.data() + r * batch->cols;
            if (skipped != 0 && !row_is_finite(row, batch->cols)) continue;
            acc.reservoir.offer(sample_id(batch->ordinal * st.world + st.rank, r), row);
            for (std::int64_t c = 0; c < batch->cols; ++c) acc.sum_abs[static_cast<std::size_t>(c)] += std::abs(row[c]);
          }
          acc.batch_rows[batch->ordinal] = batch->rows;
          acc.rows += batch->rows - skipped;
          acc.nonfinite_rows += skipped;
          acc.output_shape = batch->output_shape;
          st.rows_total.fetch_add(batch->rows - skipped, std::memory_order_relaxed);
          st.nonfinite_total.fetch_add(skipped, std::memory_order_relaxed);
        } catch (const std::exception& e) {
          st.totals[static_cast<std::size_t>(batch->layer)].errors.fetch_add(1, std::memory_order_relaxed);
          st.record_error(fmt::format("worker, layer '{}': {}", st.layers[static_cast<std::size_t>(batch->layer)].name,
                                      e.what()));
        }
        release(batch);
        window->processed.fetch_add(1, std::memory_order_release);
      }
    });
  }

  s.snapshot_thread = std::thread([this] {
    auto& st = *state_;
    for (;;) {
      SnapshotJob job;
      {
        std::unique_lock<std::mutex> lock(st.jobs_mutex);
        st.jobs_changed.wait(lock, [&] { return st.stopping || !st.jobs.empty(); });
        if (st.jobs.empty()) return;
        job = st.jobs.front();
        st.jobs.pop_front();
        st.job_running = true;
      }
      try {
        st.make_snapshot(job);
      } catch (const std::exception& e) {
        st.record_error(fmt::format("snapshot at epoch {}: {}", job.epoch, e.what()));
      }
      {
        std::lock_guard<std::mutex> lock(st.jobs_mutex);
        st.job_running = false;
      }
      st.jobs_changed.notify_all();
    }
  });

  s.open_window_if_captured(1);
}

Engine::~Engine() { close(); }

void Engine::release(Batch* batch) noexcept {
  batch->window = nullptr;
  state_->pool.push(batch);
}

BatchTicket Engine::begin_batch(int layer, bool gradient) noexcept {
  auto& s = *state_;
  BatchTicket ticket;
  Window* window = s.current.load(std::memory_order_acquire);
  if (window == nullptr) return ticket;
  window->active.fetch_add(1);
  if (window->closed.load()) {
    window->active.fetch_sub(1);
    return ticket;
  }
  const auto index = static_cast<std::size_t>(layer);
  std::int64_t ordinal = 0;
  if (!gradient) {
    window->counters[index].captured_batches.fetch_add(1, std::memory_order_relaxed);
    s.totals[index].captured_batches.fetch_add(1, std::memory_order_relaxed);
    ordinal = window->ordinals[index].fetch_add(1, std::memory_order_relaxed);
  }
  if (!gradient && s.options.max_batches() > 0 && ordinal >= s.options.max_batches()) {
    window->counters[index].skipped_batches.fetch_add(1, std::memory_order_relaxed);
    s.totals[index].skipped_batches.fetch_add(1, std::memory_order_relaxed);
    window->active.fetch_sub(1);
    return ticket;
  }
  // Under drop_newest a full queue drops the batch here, before the probe reduces and copies it: a
  // saturated consumer then costs the training step a counter increment, not a copy that is thrown
  // away. size() is a snapshot; submit()'s try_push still decides when the queue fills in between.
  if (s.options.overflow() == Overflow::drop_newest && s.queue.size() >= s.queue.capacity()) {
    window->counters[index].dropped_batches.fetch_add(1, std::memory_order_relaxed);
    s.totals[index].dropped_batches.fetch_add(1, std::memory_order_relaxed);
    window->active.fetch_sub(1);
    return ticket;
  }
  Batch* batch = nullptr;
  if (!s.pool.try_pop(batch)) {
    try {
      batch = new Batch();
    } catch (...) {
      window->counters[index].errors.fetch_add(1, std::memory_order_relaxed);
      window->active.fetch_sub(1);
      return ticket;
    }
  }
  batch->layer = layer;
  batch->gradient = gradient;
  batch->ordinal = ordinal;
  batch->window = window;
  ticket.engine_ = this;
  ticket.batch_ = batch;
  return ticket;
}

void Engine::submit(BatchTicket ticket) noexcept {
  auto& s = *state_;
  Batch* batch = ticket.batch_;
  if (batch == nullptr) return;
  Window* window = batch->window;
  const auto index = static_cast<std::size_t>(batch->layer);
  auto skip = [&](const std::string& why) {
    window->counters[index].skipped_batches.fetch_add(1, std::memory_order_relaxed);
    s.totals[index].skipped_batches.fetch_add(1, std::memory_order_relaxed);
    s.record_error(why);
  };
  std::int64_t expected = -1;
  if (!batch->gradient && !s.widths[index].compare_exchange_strong(expected, batch->cols) && expected != batch->cols) {
    skip(fmt::format("layer '{}' changed from {} to {} neurons; batches of the new width are skipped",
                     s.layers[index].name, expected, batch->cols));
    return;  // the ticket's destructor returns the buffer and leaves the window
  }
  if (static_cast<std::int64_t>(batch->values.size()) != batch->rows * batch->cols) {
    skip(fmt::format("layer '{}': batch not filled", s.layers[index].name));
    return;
  }
  ticket.batch_ = nullptr;  // ownership moves to the queue
  window->submitted.fetch_add(1, std::memory_order_acq_rel);
  bool queued = true;
  if (s.options.overflow() == Overflow::drop_newest) {
    queued = s.queue.try_push(batch);
  } else {
    try {
      s.queue.push(batch);
    } catch (...) {
      queued = false;
    }
  }
  if (!queued) {
    window->submitted.fetch_sub(1, std::memory_order_acq_rel);
    window->counters[index].dropped_batches.fetch_add(1, std::memory_order_relaxed);
    s.totals[index].dropped_batches.fetch_add(1, std::memory_order_relaxed);
    release(batch);
  }
  window->active.fetch_sub(1);
}

void Engine::report_probe_error(int layer, const std::string& message) noexcept {
  auto& s = *state_;
  try {
    if (layer >= 0 && static_cast<std::size_t>(layer) < s.layers.size()) {
      s.totals[static_cast<std::size_t>(layer)].errors.fetch_add(1, std::memory_order_relaxed);
      if (Window* window = s.current.load(std::memory_order_acquire)) {
        window->counters[static_cast<std::size_t>(layer)].errors.fetch_add(1, std::memory_order_relaxed);
      }
    }
    s.record_error(message);
  } catch (...) {
  }
}

void Engine::observe(std::vector<float> per_sample_loss, std::vector<std::int32_t> tags) {
  Window* window = state_->current.load(std::memory_order_acquire);
  if (window == nullptr) return;
  std::lock_guard<std::mutex> lock(window->observations_mutex);
  window->observations.push_back(Window::Observation{std::move(per_sample_loss), std::move(tags)});
}

void Engine::set_reference_source(std::function<void()> forward) { state_->reference_source = std::move(forward); }
void Engine::set_reference_mode(bool on) noexcept { state_->reference_on = on; }
bool Engine::reference_mode() const noexcept { return state_->reference_on.load(); }

void Engine::add_reference_rows(int layer, const float* rows, std::int64_t n_rows, std::int64_t cols) noexcept {
  auto& s = *state_;
  try {
    std::lock_guard<std::mutex> lock(s.reference_mutex);
    if (layer < 0 || static_cast<std::size_t>(layer) >= s.reference.size()) return;
    auto& ref = s.reference[static_cast<std::size_t>(layer)];
    if (!ref.rows.empty() && ref.cols != cols) return;  // a second call of the same layer with another width
    ref.cols = cols;
    ref.rows.insert(ref.rows.end(), rows, rows + n_rows * cols);
  } catch (...) {
  }
}

bool Engine::capturing() const noexcept { return state_->current.load(std::memory_order_acquire) != nullptr; }

void Engine::State::open_window_if_captured(std::int64_t epoch) {
  auto& s = *this;
  if (epoch % s.options.every() != 0 || s.distributed_failed) return;
  auto window = std::make_unique<Window>(s.layers.size(), static_cast<std::size_t>(s.options.workers()));
  Window* raw = window.get();
  {
    std::lock_guard<std::mutex> lock(s.windows_mutex);
    s.windows.push_back(std::move(window));
  }
  s.current.store(raw, std::memory_order_release);
  if (s.hooks.set_capture) s.hooks.set_capture(true);
}

Window* Engine::State::close_window() {
  auto& s = *this;
  Window* window = s.current.exchange(nullptr, std::memory_order_acq_rel);
  if (window != nullptr) {
    if (s.hooks.set_capture) s.hooks.set_capture(false);
    window->closed.store(true);
  }
  return window;
}

void Engine::end_epoch(std::int64_t epoch, double loss) {
  auto& s = *state_;
  if (s.closed) throw UsageError(fmt::format("end_epoch({}) after the session was closed", epoch));
  if (s.last_epoch && epoch <= *s.last_epoch) {
    throw UsageError(fmt::format("end_epoch({}) after end_epoch({}): epochs must increase", epoch, *s.last_epoch));
  }
  s.last_epoch = epoch;
  s.pending_loss_epochs.push_back(epoch);
  s.pending_losses.push_back(loss);
  Window* window = s.close_window();
  if (epoch % s.options.every() == 0) {
    SnapshotJob job{window, epoch, loss, std::move(s.pending_loss_epochs), std::move(s.pending_losses), {}, nullptr};
    s.pending_loss_epochs.clear();
    s.pending_losses.clear();
    if (s.communicator && !s.exchange(window, job)) {
      s.open_window_if_captured(epoch + 1);
      return;
    }
    if (s.reference_source) {
      // The reference batch runs here, on the training thread, with the probes routed to the
      // reference store: one no-grad forward per snapshot.
      {
        std::lock_guard<std::mutex> lock(s.reference_mutex);
        s.reference.assign(s.layers.size(), ReferenceRows{});
      }
      s.reference_on = true;
      if (s.hooks.set_capture) s.hooks.set_capture(true);
      try {
        s.reference_source();
      } catch (const std::exception& e) {
        s.record_error(std::string("reference batch: ") + e.what());
      }
      if (s.hooks.set_capture) s.hooks.set_capture(false);
      s.reference_on = false;
      std::lock_guard<std::mutex> lock(s.reference_mutex);
      job.reference = std::move(s.reference);
      s.reference.clear();
    }
    {
      std::lock_guard<std::mutex> lock(s.jobs_mutex);
      s.jobs.push_back(std::move(job));
    }
    s.jobs_changed.notify_all();
  } else if (window != nullptr) {
    // Epoch numbers jumped past the captured epoch: its data belongs to no snapshot epoch.
    s.record_error(fmt::format("end_epoch({}): the captured epoch was not a snapshot epoch; its data is dropped",
                               epoch));
    s.discard_window(window);
  }
  s.open_window_if_captured(epoch + 1);
}

void Engine::State::wait_until_processed(Window* window) {
  while (window->active.load() != 0) std::this_thread::yield();
  const std::int64_t submitted = window->submitted.load(std::memory_order_acquire);
  while (window->processed.load(std::memory_order_acquire) < submitted) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

void Engine::State::discard_window(Window* window) {
  // Freed by the snapshot thread's order of work: only after the workers are done with it.
  std::lock_guard<std::mutex> lock(this->jobs_mutex);
  SnapshotJob job;
  job.window = window;
  job.epoch = -1;  // discard: only wait for the workers, then free the accumulators
  this->jobs.push_back(std::move(job));
  this->jobs_changed.notify_all();
}

void Engine::State::make_snapshot(const SnapshotJob& job) {
  auto& s = *this;
  const auto n_layers = s.layers.size();
  std::vector<LayerAccumulator> merged(n_layers);
  Snapshot snapshot;
  snapshot.epoch = job.epoch;
  snapshot.loss = job.loss;
  snapshot.timestamp = now_seconds();
  snapshot.layers.resize(n_layers);
  snapshot.loss_epochs = job.loss_epochs;
  snapshot.losses = job.losses;
  std::vector<Counters> counters(n_layers);
  if (job.exchanged) {
    merged = std::move(job.exchanged->layers);
    counters = job.exchanged->counters;
  } else if (job.window != nullptr) {
    wait_until_processed(job.window);
    merge_window(*job.window, merged, counters);
  }
  for (std::size_t l = 0; l < n_layers && l < counters.size(); ++l) snapshot.layers[l].counters = counters[l];
  if (job.epoch < 0) return;  // a discarded window: accumulators freed above

  s.arena.execute([&] {
    tbb::parallel_for(std::size_t{0}, n_layers, [&](std::size_t l) {
      analyse_layer(merged[l], s.layers[l].name, snapshot.layers[l]);
    });
  });
  if (job.window != nullptr) attach_observations(*job.window, merged, snapshot);
  if (job.exchanged) {
    for (std::size_t l = 0; l < n_layers && l < job.exchanged->observed.size(); ++l) {
      auto& layer = snapshot.layers[l];
      layer.reservoir_tags.assign(layer.reservoir_ids.size(), -1);
      layer.reservoir_loss.assign(layer.reservoir_ids.size(), std::numeric_limits<float>::quiet_NaN());
      const auto& observed = job.exchanged->observed[l];
      for (std::size_t k = 0; k < layer.reservoir_ids.size(); ++k) {
        if (const auto found = observed.find(layer.reservoir_ids[k]); found != observed.end()) {
          layer.reservoir_tags[k] = found->second.tag;
          layer.reservoir_loss[k] = found->second.loss;
        }
      }
    }
  }
  learn(job, snapshot);
  s.writer->append(snapshot);
  s.written.fetch_add(1, std::memory_order_release);
}

// Merges the window's per-worker accumulators (the workers are done with it) and its counters.
void Engine::State::merge_window(Window& window, std::vector<LayerAccumulator>& merged,
                                 std::vector<Counters>& counters) const {
  const auto n_layers = layers.size();
  for (auto& per_worker : window.accumulators) {
    for (std::size_t l = 0; l < n_layers; ++l) merge_accumulator(merged[l], std::move(per_worker[l]));
    per_worker.clear();
    per_worker.shrink_to_fit();
  }
  for (std::size_t l = 0; l < n_layers; ++l) {
    auto& c = counters[l];
    const auto& a = window.counters[l];
    c.captured_batches = a.captured_batches.load();
    c.dropped_batches = a.dropped_batches.load();
    c.skipped_batches = a.skipped_batches.load();
    c.errors = a.errors.load();
    c.rows = merged[l].rows;
    c.nonfinite_rows = merged[l].nonfinite_rows;
  }
}

// A distributed snapshot, on the training thread, so that every rank issues its collectives in the
// same order as the training's own: wait for this rank's workers, merge them, gather every rank's part
// to rank 0 and merge there in rank order. True on rank 0 when `job` holds the merged window; false on
// the other ranks (their part is sent) and after a failure (recorded; no later snapshot is attempted).
bool Engine::State::exchange(Window* window, SnapshotJob& job) {
  const auto n_layers = layers.size();
  if (distributed_failed) {
    if (window != nullptr) discard_window(window);
    return false;
  }
  auto part = std::make_shared<RankWindow>();
  part->layers.resize(n_layers);
  part->counters.resize(n_layers);
  part->observed.resize(n_layers);
  part->losses = job.losses;
  if (window != nullptr) {
    wait_until_processed(window);
    merge_window(*window, part->layers, part->counters);
    observe_reservoirs(*window, *part);
  }
  std::vector<std::vector<std::uint8_t>> parts;
  try {
    parts = communicator->gather(rank == 0 ? std::vector<std::uint8_t>{} : encode(*part));
    if (rank == 0) {
      if (static_cast<int>(parts.size()) != world) throw std::runtime_error("the gather returned the wrong number of parts");
      for (int r = 1; r < world; ++r) {
        merge_into(*part, decode(parts[static_cast<std::size_t>(r)], options.reservoir_size(), options.seed()));
      }
    }
  } catch (const std::exception& e) {
    distributed_failed = true;
    record_error(fmt::format("distributed snapshot at epoch {} ({}): {}; this and later snapshots are not written, "
                             "the run file keeps the earlier ones",
                             job.epoch, communicator->describe(), e.what()));
    return false;
  }
  if (rank != 0) {
    written.fetch_add(1, std::memory_order_release);  // this rank's part of a snapshot is delivered
    return false;
  }
  for (auto& loss : part->losses) loss /= part->loss_ranks;  // the mean over the ranks
  job.losses = part->losses;
  if (!job.losses.empty()) job.loss = job.losses.back();
  job.window = nullptr;  // its accumulators are merged into `part`
  job.exchanged = std::move(part);
  return true;
}

// Tags and per-sample losses of this rank's reservoir rows (attach_observations' rule), looked up
// before the rows leave the process, whose observations they index.
void Engine::State::observe_reservoirs(Window& window, RankWindow& part) const {
  std::lock_guard<std::mutex> lock(window.observations_mutex);
  for (std::size_t l = 0; l < part.layers.size(); ++l) {
    const auto& acc = part.layers[l];
    if (!acc.moments) continue;
    const auto ids = acc.reservoir.sorted_rows().second;
    for (const std::int64_t id : ids) {
      const std::int64_t global = id >> 24;
      const std::int64_t row = id & ((std::int64_t{1} << 24) - 1);
      if ((global - rank) % world != 0) continue;
      const std::int64_t ordinal = (global - rank) / world;
      if (ordinal < 0 || static_cast<std::size_t>(ordinal) >= window.observations.size()) continue;
      const auto& obs = window.observations[static_cast<std::size_t>(ordinal)];
      const auto found = acc.batch_rows.find(ordinal);
      if (found == acc.batch_rows.end() || found->second <= 0) continue;
      const auto samples = static_cast<std::int64_t>(std::max(obs.tags.size(), obs.loss.size()));
      const std::int64_t sample = row * samples / found->second;
      Observed o;
      if (sample < static_cast<std::int64_t>(obs.tags.size())) o.tag = obs.tags[static_cast<std::size_t>(sample)];
      if (sample < static_cast<std::int64_t>(obs.loss.size())) o.loss = obs.loss[static_cast<std::size_t>(sample)];
      part.observed[l].emplace(id, o);
    }
  }
}

void Engine::State::analyse_layer(LayerAccumulator& acc, const std::string& name, LayerSnapshot& out) const {
  const auto& options = this->options;
  out.name = name;
  out.output_shape = acc.output_shape;
  if (!acc.moments) {
    // Nothing captured for this layer in this window (it never fired, or every batch was dropped).
    out.n_neurons = 0;
    return;
  }
  const Moments& m = *acc.moments;
  const auto n = m.n_neurons();
  out.n_neurons = n;
  out.samples = m.count();
  const Correlation corr = correlation_from_moments(m);
  out.mean.assign(m.mean().data(), m.mean().data() + n);
  out.stddev.assign(corr.stddev.data(), corr.stddev.data() + n);
  out.min.resize(static_cast<std::size_t>(n));
  out.max.resize(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    out.min[static_cast<std::size_t>(i)] = m.count() > 0 ? m.min()(i) : std::numeric_limits<double>::quiet_NaN();
    out.max[static_cast<std::size_t>(i)] = m.count() > 0 ? m.max()(i) : std::numeric_limits<double>::quiet_NaN();
  }
  out.dead = corr.dead;
  if (options.store_correlation()) {
    out.correlation.resize(static_cast<std::size_t>(n * n));
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j) out.correlation[static_cast<std::size_t>(i * n + j)] = static_cast<float>(corr.r(i, j));
  }
  if (acc.gradients.rows > 0 && static_cast<std::int64_t>(acc.gradients.sum_abs.size()) == n) {
    const auto rows = static_cast<double>(acc.gradients.rows);
    out.gradient_samples = acc.gradients.rows;
    for (std::int64_t i = 0; i < n; ++i) {
      out.grad_mean_abs.push_back(acc.gradients.sum_abs[static_cast<std::size_t>(i)] / rows);
      out.taylor.push_back(acc.gradients.sum_product[static_cast<std::size_t>(i)] / rows);
    }
  }
  const GroupingResult grouping = group_neurons(corr, options.grouping());
  out.labels = grouping.labels;
  if (m.count() > 0 && static_cast<std::int64_t>(acc.sum_abs.size()) == n) {
    for (std::int64_t i = 0; i < n; ++i) out.mean_abs.push_back(acc.sum_abs[static_cast<std::size_t>(i)] / static_cast<double>(m.count()));
  }
  auto [rows, ids] = acc.reservoir.sorted_rows();
  const std::int64_t kept = acc.reservoir.size();
  for (std::size_t g = 0; g < grouping.groups.size(); ++g) {
    Group group;
    group.group_id = static_cast<int>(g);
    group.layer_name = name;
    group.neuron_indices = grouping.groups[g];
    group.cohesion_score = grouping.cohesion[g];
    group.min_member_correlation = grouping.min_member_correlation[g];
    group.loose = group.cohesion_score < options.grouping().threshold;
    double sum = 0.0;
    for (auto i : group.neuron_indices) sum += m.mean()(i);
    group.mean_activation = sum / static_cast<double>(group.neuron_indices.size());
    group.activation_pattern.resize(static_cast<std::size_t>(kept));
    for (std::int64_t r = 0; r < kept; ++r) {
      double row_sum = 0.0;
      for (auto i : group.neuron_indices) row_sum += rows[static_cast<std::size_t>(r * n + i)];
      group.activation_pattern[static_cast<std::size_t>(r)] =
          static_cast<float>(row_sum / static_cast<double>(group.neuron_indices.size()));
    }
    for (auto i : group.neuron_indices) {
      if (!out.taylor.empty()) group.importance += std::abs(out.taylor[static_cast<std::size_t>(i)]);
    }
    out.groups.push_back(std::move(group));
  }
  out.reservoir = std::move(rows);
  out.reservoir_ids = std::move(ids);
}

// Lineages, events, skills, dormant rates, CKA and the phase (formulas: docs/LEARNING.md).
// Temporal CKA uses the reference batch (the same inputs at both snapshots); CKA between layers uses
// the reservoir rows both layers hold (the same samples of the same forward passes).
void Engine::State::learn(const SnapshotJob& job, Snapshot& snapshot) {
  const learning::LearningOptions learning_options;
  const auto n_layers = snapshot.layers.size();
  for (std::size_t l = 0; l < n_layers; ++l) {
    auto& layer = snapshot.layers[l];
    try {
      learning::annotate_layer(layer, options.tag_names(), learning_options);
      if (l < job.reference.size() && !job.reference[l].rows.empty()) {
        const auto& now = job.reference[l];
        const auto& before = previous_reference[l];
        if (!before.rows.empty() && before.rows.size() == now.rows.size()) {
          const std::int64_t rows = static_cast<std::int64_t>(now.rows.size()) / now.cols;
          layer.cka_previous = learning::linear_cka(learning::MatrixView<float>{before.rows.data(), rows, before.cols},
                                                    learning::MatrixView<float>{now.rows.data(), rows, now.cols});
        }
        previous_reference[l] = now;
        // Stored with the snapshot (for `neuronmap compare`) when its width is the layer's.
        if (now.cols == layer.n_neurons && now.cols > 0) {
          layer.reference = now.rows;
          layer.reference_rows = static_cast<std::int64_t>(now.rows.size()) / now.cols;
        }
      }
    } catch (const std::exception& e) {
      record_error(fmt::format("learning analysis, layer '{}': {}", layer.name, e.what()));
    }
  }
  if (previous_light) snapshot.phase = learning::to_string(learning::snapshot_phase(*previous_light, snapshot, learning_options));
  const double loss_change = previous_light ? snapshot.loss - previous_light->loss : std::numeric_limits<double>::quiet_NaN();
  for (std::size_t l = 0; l < n_layers; ++l) {
    auto& layer = snapshot.layers[l];
    try {
      const auto step = layer_learning[l].update(snapshot.epoch, snapshot.loss, layer);
      for (const auto& e : step.events) {
        Event event = learning::to_event(e);
        event.loss_change = loss_change;
        snapshot.events.push_back(std::move(event));
      }
      // The baseline snapshot has no interval behind it: its groups' phase is "unknown" (docs/LEARNING.md).
      for (auto& group : layer.groups) group.learning_phase = snapshot.phase.empty() ? "unknown" : snapshot.phase;
    } catch (const std::exception& e) {
      record_error(fmt::format("lineages, layer '{}': {}", layer.name, e.what()));
    }
  }
  snapshot.layer_cka.assign(n_layers * n_layers, std::numeric_limits<double>::quiet_NaN());
  for (std::size_t a = 0; a < n_layers; ++a) {
    for (std::size_t b = a; b < n_layers; ++b) {
      double cka = std::numeric_limits<double>::quiet_NaN();
      try {
        if (a == b) cka = snapshot.layers[a].reservoir_ids.empty() ? cka : 1.0;
        else cka = learning::reservoir_cka(snapshot.layers[a], snapshot.layers[b]);
      } catch (const std::exception&) {
      }
      snapshot.layer_cka[a * n_layers + b] = snapshot.layer_cka[b * n_layers + a] = cka;
    }
  }
  Snapshot light;
  light.epoch = snapshot.epoch;
  light.loss = snapshot.loss;
  light.layers.resize(n_layers);
  for (std::size_t l = 0; l < n_layers; ++l) light.layers[l].cka_previous = snapshot.layers[l].cka_previous;
  previous_light = std::move(light);
}

// Tags and per-sample losses of the reservoir rows: row r of a layer's n-th batch (R rows) belongs to
// sample r * B / R of the n-th observed forward pass (B samples), which also covers per-token rows.
void Engine::State::attach_observations(Window& window, const std::vector<LayerAccumulator>& merged,
                                        Snapshot& snapshot) const {
  std::lock_guard<std::mutex> lock(window.observations_mutex);
  for (std::size_t l = 0; l < snapshot.layers.size(); ++l) {
    auto& layer = snapshot.layers[l];
    const auto kept = layer.reservoir_ids.size();
    layer.reservoir_tags.assign(kept, -1);
    layer.reservoir_loss.assign(kept, std::numeric_limits<float>::quiet_NaN());
    for (std::size_t k = 0; k < kept; ++k) {
      const std::int64_t id = layer.reservoir_ids[k];
      const std::int64_t ordinal = id >> 24;
      const std::int64_t row = id & ((std::int64_t{1} << 24) - 1);
      if (ordinal < 0 || static_cast<std::size_t>(ordinal) >= window.observations.size()) continue;
      const auto& obs = window.observations[static_cast<std::size_t>(ordinal)];
      const auto found = merged[l].batch_rows.find(ordinal);
      if (found == merged[l].batch_rows.end() || found->second <= 0) continue;
      const auto samples = static_cast<std::int64_t>(std::max(obs.tags.size(), obs.loss.size()));
      const std::int64_t sample = row * samples / found->second;
      if (sample < static_cast<std::int64_t>(obs.tags.size())) layer.reservoir_tags[k] = obs.tags[static_cast<std::size_t>(sample)];
      if (sample < static_cast<std::int64_t>(obs.loss.size())) layer.reservoir_loss[k] = obs.loss[static_cast<std::size_t>(sample)];
    }
  }
}

void Engine::flush() {
  auto& s = *state_;
  std::unique_lock<std::mutex> lock(s.jobs_mutex);
  s.jobs_changed.wait(lock, [&] { return s.jobs.empty() && !s.job_running; });
}

void Engine::close() noexcept {
  auto& s = *state_;
  if (s.closed) return;
  s.closed = true;
  try {
    // A window still open belongs to an epoch that never ended: its data is not a snapshot.
    if (Window* window = s.close_window()) s.discard_window(window);
    for (std::size_t i = 0; i < s.workers.size(); ++i) s.queue.push(nullptr);
    for (auto& t : s.workers) t.join();
    {
      std::lock_guard<std::mutex> lock(s.jobs_mutex);
      s.stopping = true;
    }
    s.jobs_changed.notify_all();
    if (s.snapshot_thread.joinable()) s.snapshot_thread.join();
    if (s.writer) s.writer->close();
  } catch (const std::exception& e) {
    s.record_error(std::string("closing the session: ") + e.what());
  } catch (...) {
    s.record_error("closing the session: unknown error");
  }
  Batch* batch = nullptr;
  while (s.pool.try_pop(batch)) delete batch;
}

Counters Engine::counters() const {
  const auto& s = *state_;
  Counters c;
  for (std::size_t l = 0; l < s.layers.size(); ++l) {
    c.captured_batches += s.totals[l].captured_batches.load();
    c.dropped_batches += s.totals[l].dropped_batches.load();
    c.skipped_batches += s.totals[l].skipped_batches.load();
    c.errors += s.totals[l].errors.load();
  }
  c.rows = s.rows_total.load();
  c.nonfinite_rows = s.nonfinite_total.load();
  return c;
}

std::int64_t Engine::snapshots_written() const noexcept { return state_->written.load(std::memory_order_acquire); }

std::string Engine::last_error() const {
  std::lock_guard<std::mutex> lock(state_->error_mutex);
  return state_->first_error;
}

const std::vector<neuronmap::LayerInfo>& Engine::layers() const noexcept { return state_->layers; }
const Options& Engine::options() const noexcept { return state_->options; }
void Engine::set_worker_delay(double seconds) noexcept { state_->worker_delay.store(seconds); }

}  // namespace neuronmap::detail
