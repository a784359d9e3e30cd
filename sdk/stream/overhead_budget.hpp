// Options::overhead_budget: holds a captured epoch's training-step slowdown within a fraction by
// capturing every stride-th forward pass, decided in begin_batch, before a probe copies anything.
//
// The controller compares what a captured forward pass costs with the step time:
// - the step time t: the time between the first probe calls of consecutive forward passes (EWMA);
// - the cost c of one captured pass: the probes' time on the training thread (copy, and any wait
//   for a full queue) plus the workers' wall time for its batches, as decaying sums over the recent
//   captured passes (the workers report late; the sums do not care).
// stride = ceil(c / (budget * t)). Counting the workers' whole time assumes they take it from the
// training (no spare core): on a machine with idle cores the budget holds with room to spare, and
// the stride also keeps the workers' wall time within the steps between two captures, so the queue
// does not fill. Statistics stay exact over the passes captured; the others are counted per layer
// (Counters::budget_skipped_batches).
//
// That model misses costs the timers cannot see: a worker's product that preempts one of the
// training's own BLAS threads stalls the whole training matmul, whose partner threads spin-wait for
// it (measured: 1.14-1.18x with a budget of 0.05 where OpenBLAS runs a thread on every core). So the
// controller also measures the slowdown itself: steps during which none of our work ran (the pass
// before them not captured, no worker busy or finished since) give the clean step time t0; every other
// step's excess over t0 is charged to the captures, as a decaying sum per captured pass. The cost
// used is the larger of the two estimates; the direct one needs kMinCleanSteps clean steps first.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <mutex>

namespace neuronmap::detail {

class OverheadBudget {
 public:
  /// `budget`: the slowdown allowed, e.g. 0.05; 0 turns the controller off. Set before any probe runs.
  void set_budget(double budget) noexcept { budget_ = budget; }
  bool enabled() const noexcept { return budget_ > 0.0; }

  /// Slots that remember a window's recent decisions, so that every layer of one forward pass gets
  /// the same answer. A window holds kDecisionSlots of them, each -1 at first.
  static constexpr std::int64_t kDecisionSlots = 64;

  /// On a probing thread, for each layer's batch of forward pass `ordinal` of a window: whether it
  /// is captured. The first layer of a pass decides; the others read `decisions` (the window's).
  bool capture(std::int64_t ordinal, std::int64_t* decisions) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    std::int64_t& slot = decisions[ordinal % kDecisionSlots];
    if (slot >= 0 && (slot >> 1) == ordinal) return (slot & 1) != 0;
    const bool captured = decide(ordinal);
    slot = (ordinal << 1) | (captured ? 1 : 0);
    return captured;
  }

  /// Time a captured batch cost the training thread in the probe (begin_batch to submit).
  void add_probe_cost(double seconds) noexcept { add(pending_probe_, seconds); }
  /// Wall time a worker spent on one batch.
  void add_worker_cost(double seconds) noexcept { add(pending_worker_, seconds); }
  /// A worker's work on one batch (any kind), for its whole scope: the steps it overlaps are not clean.
  /// Does nothing while the budget is off.
  class WorkerActivity {
   public:
    explicit WorkerActivity(OverheadBudget& budget) noexcept : budget_(budget.enabled() ? &budget : nullptr) {
      if (budget_ != nullptr) budget_->worker_started();
    }
    ~WorkerActivity() {
      if (budget_ != nullptr) budget_->worker_finished();
    }
    WorkerActivity(const WorkerActivity&) = delete;
    WorkerActivity& operator=(const WorkerActivity&) = delete;

   private:
    OverheadBudget* budget_;
  };

  /// A worker starts / finishes a batch (any kind): the steps it overlaps are not clean.
  void worker_started() noexcept {
    busy_workers_.fetch_add(1, std::memory_order_acq_rel);
    mark_activity();
  }
  void worker_finished() noexcept {
    mark_activity();
    busy_workers_.fetch_sub(1, std::memory_order_acq_rel);
  }
  std::int64_t stride() const noexcept { return stride_.load(std::memory_order_relaxed); }

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr double kStepWeight = 0.05;  // EWMA weight of one step-time sample
  static constexpr double kDecay = 0.98;       // per pass: the cost sums cover ~50 recent passes
  static constexpr double kPauseFactor = 4.0;
  static constexpr int kPauseLimit = 3;
  static constexpr int kMinCleanSteps = 4;  // before the clean step time is trusted

  // Once per forward pass, under mutex_.
  bool decide(std::int64_t ordinal) noexcept {
    const bool first_of_window = ordinal == 0;
    const auto now = Clock::now();
    if (!first_of_window && have_last_) {
      const double dt = std::chrono::duration<double>(now - last_pass_).count();
      // A gap far longer than the step (an evaluation, a checkpoint) is not a step; a lasting
      // change of the step time is taken after kPauseLimit such gaps in a row.
      if (step_ > 0 && dt > kPauseFactor * step_ && ++pauses_ <= kPauseLimit) {
      } else {
        pauses_ = 0;
        step_ = step_ > 0 ? (1 - kStepWeight) * step_ + kStepWeight * dt : dt;
        measure_step(dt);
      }
    }
    last_pass_ = now;
    have_last_ = true;
    probe_cost_ *= kDecay;
    worker_cost_ *= kDecay;
    captured_ *= kDecay;
    excess_ *= kDecay;
    probe_cost_ += pending_probe_.exchange(0.0);
    worker_cost_ += pending_worker_.exchange(0.0);
    captured_ += static_cast<double>(pending_captured_.exchange(0));
    if (captured_ > 0.5 && step_ > 0) {
      const double modelled = (probe_cost_ + worker_cost_) / captured_;
      const bool measured = clean_steps_ >= kMinCleanSteps;
      const double direct = measured ? std::max(0.0, excess_ / captured_) : -1.0;
      const double step = measured ? clean_step_ : step_;
      const double wanted = std::ceil(std::max(modelled, direct) / (budget_ * step));
      stride_.store(static_cast<std::int64_t>(std::clamp(wanted, 1.0, 1e6)), std::memory_order_relaxed);
    }
    if (first_of_window) last_captured_ = -stride_.load();
    const bool capture = ordinal - last_captured_ >= stride_.load(std::memory_order_relaxed);
    if (capture) {
      last_captured_ = ordinal;
      pending_captured_.fetch_add(1, std::memory_order_relaxed);
    }
    previous_captured_ = capture;
    return capture;
  }

  // The step that just ended (from the previous pass to this one): clean when the previous pass was
  // not captured and no worker ran during it; else its excess over the clean step time is ours.
  void measure_step(double dt) noexcept {
    const auto step_began = std::chrono::duration_cast<std::chrono::nanoseconds>(last_pass_.time_since_epoch()).count();
    const bool clean = !previous_captured_ && busy_workers_.load(std::memory_order_acquire) == 0 &&
                       last_activity_.load(std::memory_order_acquire) < step_began;
    if (clean) {
      clean_step_ = clean_steps_ > 0 ? (1 - kStepWeight) * clean_step_ + kStepWeight * dt : dt;
      ++clean_steps_;
    } else if (clean_steps_ >= kMinCleanSteps) {
      excess_ += dt - clean_step_;
    }
  }

  void mark_activity() noexcept {
    const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
    last_activity_.store(now, std::memory_order_release);
  }

  static void add(std::atomic<double>& to, double seconds) noexcept {
    double old = to.load(std::memory_order_relaxed);
    while (!to.compare_exchange_weak(old, old + seconds, std::memory_order_relaxed)) {
    }
  }

  double budget_ = 0.0;
  std::mutex mutex_;  // capture(): once per layer and forward pass
  Clock::time_point last_pass_{};
  bool have_last_ = false;
  double step_ = 0.0;
  int pauses_ = 0;
  double probe_cost_ = 0.0, worker_cost_ = 0.0, captured_ = 0.0;
  bool previous_captured_ = false;
  double clean_step_ = 0.0, excess_ = 0.0;
  std::int64_t clean_steps_ = 0;
  std::atomic<int> busy_workers_{0};
  std::atomic<std::int64_t> last_activity_{0};  // steady clock, ns
  std::int64_t last_captured_ = 0;
  std::atomic<std::int64_t> stride_{1};
  std::atomic<double> pending_probe_{0.0}, pending_worker_{0.0};
  std::atomic<std::int64_t> pending_captured_{0};
};

}  // namespace neuronmap::detail
