// The engine: bounded queue → workers → per-window accumulators → snapshot thread, which seals each
// captured epoch's window (stream/window.hpp), has the snapshot builder make its snapshot
// (snapshot/builder.hpp) and appends it to the run file.
#include "stream/engine.hpp"

#include <chrono>
#include <thread>

#include <pthread.h>
#include <sched.h>

#include <fmt/format.h>

#include "neuronmap/errors.hpp"
#include "stream/accumulator.hpp"
#include "stream/engine_state.hpp"
#include "stream/exchange.hpp"
#include "stream/reservoir.hpp"

namespace neuronmap::detail {
namespace {

// Named threads: profiles and `top -H` tell the workers from the training's threads.
void name_this_thread(const char* name) noexcept {
#ifdef __linux__
  pthread_setname_np(pthread_self(), name);
#else
  (void)name;
#endif
}

// SCHED_IDLE: the thread runs only on a core no other thread of normal priority wants, and yields it
// at once when one does. LibTorch's BLAS threads spin-wait for each other inside a product: a worker
// that held their core for a scheduler slice stalled the whole product (docs/PERFORMANCE.md).
// While the queue is more than half full the producer returns the workers to the normal policy, until
// a worker finds it below a quarter: on a machine busy with other work an idle-class thread starves
// (it could not even run to notice), and under Overflow::block the training would then wait for it.
void set_thread_idle(pthread_t thread, bool idle) noexcept {
#ifdef __linux__
  sched_param param{};
  param.sched_priority = 0;
  pthread_setschedparam(thread, idle ? SCHED_IDLE : SCHED_OTHER, &param);
#else
  (void)thread;
  (void)idle;
#endif
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

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

const void* BatchTicket::window() const noexcept { return batch_ != nullptr ? batch_->window : nullptr; }

float* BatchTicket::reserve_values(std::int64_t rows, std::int64_t cols) {
  batch_->rows = rows;
  batch_->cols = cols;
  batch_->values.resize(static_cast<std::size_t>(rows * cols));
  return batch_->values.data();
}

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
  for (std::size_t i = 0; i < n_layers; ++i) {
    s.large_pools.push_back(std::make_unique<tbb::concurrent_bounded_queue<Batch*>>());
    for (int w = 0; w < s.options.workers(); ++w) {
      auto batch = std::make_unique<Batch>();
      batch->large = true;
      s.large_pools.back()->push(batch.release());
    }
  }
  s.arena.initialize(s.options.analysis_threads());
  s.budget.set_budget(s.options.overhead_budget());
  s.idle_priority = s.options.worker_priority() == WorkerPriority::idle;
  s.workers_idle = s.idle_priority;

  std::vector<std::string> layer_names;
  for (const auto& layer : s.layers) layer_names.push_back(layer.name);
  s.history.emplace(layer_names);
  s.communicator = s.options.communicator();
  if (s.communicator) {
    s.rank = s.communicator->rank();
    s.world = s.communicator->size();
  }
  // In a distributed session only rank 0 opens the run file.
  if (s.rank == 0) s.writer = std::make_unique<RunWriter>(s.options.file(), info, s.options.overwrite());

  for (int w = 0; w < s.options.workers(); ++w) {
    s.workers.emplace_back([this, w] {
      name_this_thread("nm-worker");
      auto& st = *state_;
      bool idle_now = st.idle_priority;
      if (idle_now) set_thread_idle(pthread_self(), true);
      Batch* batch = nullptr;
      for (;;) {
        st.queue.pop(batch);
        if (batch == nullptr) return;  // the stop sentinel, queued after every batch
        if (st.idle_priority) {
          if (st.queue.size() < st.options.queue_capacity() / 4) st.workers_idle.store(true);
          const bool want = st.workers_idle.load();
          if (want != idle_now) set_thread_idle(pthread_self(), idle_now = want);
        }
        const auto started = st.budget.enabled() ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
        const OverheadBudget::WorkerActivity activity(st.budget);  // its clean steps are those no worker overlapped
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
          if (batch->partial) {
            // Reduced on the output's device: merged serially (the worker path runs no parallel loops).
            const std::int64_t rows = batch->partial->rows, nonfinite = batch->partial->nonfinite_rows;
            merge_accumulator(acc, std::move(*batch->partial), /*parallel=*/false);
            st.rows_total.fetch_add(rows, std::memory_order_relaxed);
            st.nonfinite_total.fetch_add(nonfinite, std::memory_order_relaxed);
            batch->partial.reset();
            release(batch);
            window->processed.fetch_add(1, std::memory_order_release);
            continue;
          }
          if (batch->attention) acc.heads.add(batch->values.data(), batch->rows, batch->cols, batch->output_shape);
          if (st.options.transform()) {
            RowsView view{st.layers[static_cast<std::size_t>(batch->layer)].name, batch->values.data(), batch->rows,
                          batch->cols};
            st.options.transform()(view);
          }
          const std::int64_t skipped =
              acc.add_batch(batch->values.data(), batch->rows, batch->cols, batch->ordinal,
                            batch->ordinal * st.world + st.rank, st.options.reservoir_size(), st.options.seed(),
                            st.options.products() == Products::float32 ? ProductPrecision::f32 : ProductPrecision::f64);
          acc.output_shape = batch->output_shape;
          st.rows_total.fetch_add(batch->rows - skipped, std::memory_order_relaxed);
          st.nonfinite_total.fetch_add(skipped, std::memory_order_relaxed);
          if (st.budget.enabled())
            st.budget.add_worker_cost(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        } catch (const std::exception& e) {
          st.totals[static_cast<std::size_t>(batch->layer)].errors.fetch_add(1, std::memory_order_relaxed);
          window->counters[static_cast<std::size_t>(batch->layer)].errors.fetch_add(1, std::memory_order_relaxed);
          st.record_error(fmt::format("worker, layer '{}': {}", st.layers[static_cast<std::size_t>(batch->layer)].name,
                                      e.what()));
        }
        release(batch);
        window->processed.fetch_add(1, std::memory_order_release);
      }
    });
  }

  s.snapshot_thread = std::thread([this] {
    name_this_thread("nm-snapshot");
    auto& st = *state_;
    for (;;) {
      SnapshotJob job;
      {
        std::unique_lock<std::mutex> lock(st.jobs_mutex);
        st.jobs_changed.wait(lock, [&] { return st.stopping || !st.jobs.empty(); });
        if (st.jobs.empty()) return;
        job = std::move(st.jobs.front());
        st.jobs.pop_front();
        st.job_running = true;
      }
      try {
        st.make_snapshot(job);
      } catch (const std::exception& e) {
        st.record_error(fmt::format("snapshot at epoch {}: {}", job.sealed.epoch, e.what()));
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
  batch->partial.reset();
  if (batch->large) {
    state_->large_pools[static_cast<std::size_t>(batch->layer)]->push(batch);  // never full: it made them
  } else {
    state_->pool.push(batch);
  }
}

BatchTicket Engine::begin_batch(int layer, bool gradient, Route route) noexcept {
  auto& s = *state_;
  BatchTicket ticket;
  Window* window = s.enter_open_window();
  if (window == nullptr) return ticket;
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
  if (s.budget.enabled()) {
    // Decided before anything is copied; a layer's gradients follow its last forward pass.
    const bool captured = gradient ? window->forward_captured[index].load(std::memory_order_relaxed)
                                   : s.budget.capture(ordinal, window->budget_decisions);
    if (!gradient) window->forward_captured[index].store(captured, std::memory_order_relaxed);
    if (!captured) {
      if (!gradient) {
        window->counters[index].budget_skipped_batches.fetch_add(1, std::memory_order_relaxed);
        s.totals[index].budget_skipped_batches.fetch_add(1, std::memory_order_relaxed);
      }
      window->active.fetch_sub(1);
      return ticket;
    }
  }
  // Under drop_newest a full queue drops the batch here, before the probe reduces and copies it: a
  // saturated consumer then costs the training step a counter increment, not a copy that is thrown
  // away. size() is a snapshot; submit()'s try_push still decides when the queue fills in between.
  if (route != Route::probe && s.options.overflow() == Overflow::drop_newest && s.queue.size() >= s.queue.capacity()) {
    window->counters[index].dropped_batches.fetch_add(1, std::memory_order_relaxed);
    s.totals[index].dropped_batches.fetch_add(1, std::memory_order_relaxed);
    window->active.fetch_sub(1);
    return ticket;
  }
  Batch* batch = nullptr;
  if (route == Route::queue_large) {
    auto& large = *s.large_pools[index];
    bool got = large.try_pop(batch);
    if (!got && s.options.overflow() == Overflow::block) {
      try {
        large.pop(batch);  // until a worker has processed this layer's earlier batch
        got = true;
      } catch (...) {
      }
    }
    if (got && window->closed.load()) {  // the epoch ended while this probe waited
      large.push(batch);
      got = false;
    } else if (!got) {
      window->counters[index].dropped_batches.fetch_add(1, std::memory_order_relaxed);
      s.totals[index].dropped_batches.fetch_add(1, std::memory_order_relaxed);
    }
    if (!got) {
      window->active.fetch_sub(1);
      return ticket;
    }
  } else if (!s.pool.try_pop(batch)) {
    try {
      batch = new Batch();
    } catch (...) {
      window->counters[index].errors.fetch_add(1, std::memory_order_relaxed);
      s.totals[index].errors.fetch_add(1, std::memory_order_relaxed);
      window->active.fetch_sub(1);
      return ticket;
    }
  }
  batch->layer = layer;
  batch->gradient = gradient;
  batch->ordinal = ordinal;
  batch->window = window;
  if (s.budget.enabled()) batch->begun = std::chrono::steady_clock::now();
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
  const auto batch_begun = batch->begun;  // the batch may be a worker's once queued
  ticket.batch_ = nullptr;  // ownership moves to the queue
  window->submitted.fetch_add(1, std::memory_order_acq_rel);
  bool queued = true;
  if (s.options.overflow() == Overflow::drop_newest && !batch->partial) {
    queued = s.queue.try_push(batch);
  } else {
    try {
      s.queue.push(batch);
    } catch (...) {
      queued = false;
    }
  }
  if (queued && s.idle_priority && s.queue.size() > s.options.queue_capacity() / 2 && s.workers_idle.exchange(false)) {
    for (auto& worker : s.workers) set_thread_idle(worker.native_handle(), false);
  }
  if (queued && s.budget.enabled())
    s.budget.add_probe_cost(std::chrono::duration<double>(std::chrono::steady_clock::now() - batch_begun).count());
  if (!queued) {
    window->submitted.fetch_sub(1, std::memory_order_acq_rel);
    window->counters[index].dropped_batches.fetch_add(1, std::memory_order_relaxed);
    s.totals[index].dropped_batches.fetch_add(1, std::memory_order_relaxed);
    release(batch);
  }
  window->active.fetch_sub(1);
}

void Engine::consume(BatchTicket ticket) noexcept {
  auto& s = *state_;
  if (ticket.batch_ != nullptr && s.budget.enabled())
    s.budget.add_probe_cost(std::chrono::duration<double>(std::chrono::steady_clock::now() - ticket.batch_->begun).count());
}  // the ticket's destructor gives the slot back and leaves the window

BatchTicket Engine::begin_partial(int layer) noexcept {
  auto& s = *state_;
  BatchTicket ticket;
  Window* window = s.enter_open_window();
  if (window == nullptr) return ticket;
  Batch* batch = nullptr;
  if (!s.pool.try_pop(batch)) {
    try {
      batch = new Batch();
    } catch (...) {
      report_probe_error(layer, "no memory for a partial batch");
      window->active.fetch_sub(1);
      return ticket;
    }
  }
  batch->layer = layer;
  batch->gradient = false;
  batch->attention = false;
  batch->ordinal = -1;
  batch->rows = 0;
  batch->cols = 0;
  batch->values.clear();
  batch->window = window;
  if (s.budget.enabled()) batch->begun = std::chrono::steady_clock::now();
  ticket.engine_ = this;
  ticket.batch_ = batch;
  return ticket;
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
  window->observations.push_back(ForwardObservation{std::move(per_sample_loss), std::move(tags)});
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
    SnapshotJob job;
    job.window = window;
    job.sealed.epoch = epoch;
    job.sealed.loss = loss;
    job.sealed.loss_epochs = std::move(s.pending_loss_epochs);
    job.sealed.losses = std::move(s.pending_losses);
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
      job.sealed.reference = std::move(s.reference);
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

void Engine::State::discard_window(Window* window) {
  // Freed by the snapshot thread's order of work: only after the workers are done with it.
  std::lock_guard<std::mutex> lock(this->jobs_mutex);
  SnapshotJob job;
  job.window = window;
  job.discard = true;
  this->jobs.push_back(std::move(job));
  this->jobs_changed.notify_all();
}

void Engine::State::make_snapshot(SnapshotJob& job) {
  SealedWindow& sealed = job.sealed;
  if (job.window != nullptr) {
    job.window->wait_until_processed();
    // In the arena: merging the workers' moments runs a parallel loop, on analysis_threads only.
    arena.execute([&] { job.window->merge(sealed.layers, sealed.counters); });
    if (job.discard) return;
    std::lock_guard<std::mutex> lock(job.window->observations_mutex);
    sealed.observations = std::move(job.window->observations);
  }
  if (job.discard) return;
  sealed.layers.resize(layers.size());  // an epoch in which nothing was captured
  sealed.timestamp = now_seconds();
  BuiltSnapshot built;
  arena.execute([&] { built = build_snapshot(std::move(sealed), *history, options); });
  for (const auto& problem : built.problems) record_error(problem);
  writer->append(built.snapshot);
  written.fetch_add(1, std::memory_order_release);
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
  for (auto& large : s.large_pools) {
    while (large->try_pop(batch)) delete batch;
  }
}

Counters Engine::counters() const {
  const auto& s = *state_;
  Counters c;
  for (std::size_t l = 0; l < s.layers.size(); ++l) {
    c.captured_batches += s.totals[l].captured_batches.load();
    c.dropped_batches += s.totals[l].dropped_batches.load();
    c.skipped_batches += s.totals[l].skipped_batches.load();
    c.budget_skipped_batches += s.totals[l].budget_skipped_batches.load();
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
